"""The merchant site (dashboard/) through Django's test client: signing in, the sales charts,
invoice search, CSV export, an invoice's timeline and refund, products and their payment
links, settings, API keys, and tenancy (staff of one shop see nothing of another's, by URL
guessing too). The pages in a real browser: tests/test_dashboard_pages.py."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from checkout.models import ApiKey, CheckoutInvoice, Merchant, Product
from checkout.services import create_checkout_invoice, create_merchant, create_product
from checkout.staff import create_merchant_user
from lightning.models import Invoice
from refunds.models import Refund
from refunds.serializers import claim_url

from .test_checkout_page_status import expire, make_checkout
from .test_wallets_api import paid_from_outside

pytestmark = pytest.mark.django_db

PASSWORD = "a long passphrase 42"


@pytest.fixture(autouse=True)
def _base_url(settings):
    settings.PUBLIC_BASE_URL = "http://testserver"
    settings.LIGHTNING_BACKEND = "devnode"


class Staff:
    """A shop and one of its staff, signed in."""

    def __init__(self, shop_name: str, username: str):
        self.merchant, self.admin_key = create_merchant(shop_name)
        self.user = create_merchant_user(username, self.merchant, PASSWORD)
        self.client = Client()
        self.client.force_login(self.user)

    def get(self, path, **params):
        return self.client.get(path, params)

    def post(self, path, data=None):
        return self.client.post(path, data or {})


@pytest.fixture
def alice():
    return Staff("Corner Café", "alice")


@pytest.fixture
def bob():
    return Staff("Bob's Bikes", "bob")


def sell(merchant, sats=2100, paid=True, **terms) -> CheckoutInvoice:
    """A checkout made as the API makes one (its wallet follows it), paid from outside."""
    checkout, _ = create_checkout_invoice(
        merchant, {"amount": Decimal(sats), "currency": "SAT", **terms}
    )
    if paid:
        paid_from_outside(checkout.invoice.bolt11)
    return checkout


def sell_in_fiat(merchant, amount: str, currency: str, sats: int, product=None):
    """A paid fiat checkout at a fixed rate (no rate source is asked), in the wallet."""
    from wallets import services as wallets

    checkout = make_checkout(merchant, sats=sats, amount=amount, currency=currency, product=product)
    wallets.follow_invoice(checkout.invoice, merchant)
    paid_from_outside(checkout.invoice.bolt11)
    return checkout


def paid_days_ago(checkout, days: int):
    Invoice.objects.filter(pk=checkout.invoice_id).update(
        paid_at=timezone.now() - timedelta(days=days)
    )


def text(response) -> str:
    return response.content.decode()


# --- signing in ----------------------------------------------------------------------------


def test_staff_sign_in_with_their_password_and_land_on_the_dashboard(alice):
    client = Client()
    asked = client.get("/dashboard/invoices")
    assert asked.status_code == 302
    assert asked["Location"].startswith("/dashboard/login?next=/dashboard/invoices")

    wrong = client.post("/dashboard/login", {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200 and "did not match" in text(wrong)

    signed_in = client.post("/dashboard/login", {"username": "alice", "password": PASSWORD})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/dashboard/"
    home = client.get("/dashboard/")
    assert home.status_code == 200
    assert "Corner Café" in text(home) and "How the shop is doing" in text(home)
    assert (
        "Content-Security-Policy" in home
        and "'unsafe-inline'" not in home["Content-Security-Policy"]
    )

    out = client.post("/dashboard/logout")
    assert out.status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_a_user_who_runs_no_shop_is_told_to_use_the_admin():
    operator = get_user_model().objects.create_superuser("root", "", PASSWORD)
    client = Client()
    client.force_login(operator)
    page = client.get("/dashboard/")
    assert page.status_code == 403
    assert "runs no shop" in text(page) and "/admin/" in text(page)


def test_make_runs_seed_prints_a_working_staff_login_that_changes_each_run():
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    first = re.search(r"^login (\S+) (\S+)$", out.getvalue(), re.MULTILINE)
    assert first, out.getvalue()
    client = Client()
    assert (
        client.post("/dashboard/login", {"username": first[1], "password": first[2]}).status_code
        == 302
    )
    assert "Demo Coffee Roasters" in text(client.get("/dashboard/products"))

    again = io.StringIO()
    call_command("seed_demo", stdout=again)
    second = re.search(r"^login (\S+) (\S+)$", again.getvalue(), re.MULTILINE)
    assert second[2] != first[2]
    stale = Client().post("/dashboard/login", {"username": first[1], "password": first[2]})
    assert stale.status_code == 200  # the form again: the old password no longer works
    assert Merchant.objects.filter(name="Demo Coffee Roasters").count() == 1


# --- the dashboard ---------------------------------------------------------------------


def bars(page: str, unit: str) -> dict[str, str]:
    """The bars of the chart in `unit`: {day: value}."""
    figure = re.search(rf'<figure class="chart" data-unit="{unit}">(.*?)</figure>', page, re.S)
    assert figure, f"no {unit} chart"
    return dict(re.findall(r'data-day="([\d-]+)" data-value="([^"]+)"', figure[1]))


def test_the_charts_have_each_days_revenue_in_sats_and_in_each_fiat_currency(alice):
    beans = create_product(alice.merchant, name="Beans", price=Decimal("12.50"), currency="USD")
    sell(alice.merchant, 2100)
    sell(alice.merchant, 5000)
    paid_days_ago(sell(alice.merchant, 1000), 3)
    sell(alice.merchant, 9999, paid=False)  # open: not revenue
    sell_in_fiat(alice.merchant, "12.50", "USD", 20_000, product=beans)
    today = timezone.localdate().isoformat()
    three_days_ago = (timezone.localdate() - timedelta(days=3)).isoformat()

    page = text(alice.get("/dashboard/", days=7))

    sats = bars(page, "sats")
    assert len(sats) == 7
    assert sats[today] == "27100" and sats[three_days_ago] == "1000"
    assert 'aria-label="' in page and "27,100 sats" in page
    assert bars(page, "paid")[today] == "3"
    assert bars(page, "USD")[today] == "12.50"
    assert re.search(r'id="total-sats">28,100 sats<', page)
    assert "$12.50 sold in USD" in page
    assert re.search(r'id="open-count">1<', page)
    top = re.search(r'<table class="table" id="top-products">(.*?)</table>', page, re.S)[1]
    assert "Beans" in top and "20,000 sats" in top
    # The wallet holds what was paid.
    assert re.search(r'id="balance">28,100 sats<', page)
    assert len(bars(text(alice.get("/dashboard/", days=90)), "sats")) == 90


# --- invoices --------------------------------------------------------------------------


def listed(response) -> list[str]:
    return re.findall(r'<tr data-invoice="([^"]+)"', text(response))


def test_invoices_are_found_by_status_reference_email_date_and_text(alice):
    paid = sell(alice.merchant, 2100, user_ref="order-1001", email="ann@example.com")
    open_one = sell(alice.merchant, 3000, paid=False, user_ref="order-1002")
    expired = sell(alice.merchant, 4000, paid=False, description="Gift card")
    expire(expired)
    old = sell(alice.merchant, 5000, email="zed@example.com")
    CheckoutInvoice.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    assert listed(alice.get("/dashboard/invoices")) == [
        expired.public_id,
        open_one.public_id,
        paid.public_id,
        old.public_id,
    ]
    assert listed(alice.get("/dashboard/invoices", status="paid")) == [
        paid.public_id,
        old.public_id,
    ]
    assert listed(alice.get("/dashboard/invoices", status="unpaid")) == [open_one.public_id]
    assert listed(alice.get("/dashboard/invoices", status="expired")) == [expired.public_id]
    assert listed(alice.get("/dashboard/invoices", reference="1002")) == [open_one.public_id]
    assert listed(alice.get("/dashboard/invoices", email="ANN@")) == [paid.public_id]
    assert listed(alice.get("/dashboard/invoices", q="gift")) == [expired.public_id]
    assert listed(alice.get("/dashboard/invoices", q=paid.public_id)) == [paid.public_id]
    assert listed(alice.get("/dashboard/invoices", q=paid.invoice.payment_hash)) == [paid.public_id]
    month_ago = (timezone.localdate() - timedelta(days=41)).isoformat()
    ten_days_ago = (timezone.localdate() - timedelta(days=10)).isoformat()
    assert listed(alice.get("/dashboard/invoices", **{"from": month_ago, "to": ten_days_ago})) == [
        old.public_id
    ]
    backwards = alice.get("/dashboard/invoices", **{"from": ten_days_ago, "to": month_ago})
    assert "The From date is after the To date." in text(backwards)
    bad_export = alice.get("/dashboard/invoices.csv", **{"from": "yesterday"})
    assert bad_export.status_code == 400 and "Enter a valid date." in text(bad_export)


def exported(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.streaming  # sent as it is read, not built in memory
    assert response["Content-Disposition"].startswith('attachment; filename="invoices-')
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_csv_export_has_the_filtered_rows_and_defuses_formulas(alice):
    wanted = [
        sell(alice.merchant, 2100 + n, email=f"buyer{n}@example.com", user_ref=f"r{n}")
        for n in range(3)
    ]
    sell(alice.merchant, 777, paid=False, email="buyer9@example.com")
    sneaky = sell(alice.merchant, 100, description='=HYPERLINK("http://evil")')

    rows = exported(alice.get("/dashboard/invoices.csv", status="paid", email="buyer"))

    assert [r["invoice_id"] for r in rows] == [c.public_id for c in reversed(wanted)]
    first = rows[-1]
    assert first["status"] == "paid" and first["currency"] == "SAT"
    assert first["sats"] == "2100" and first["amount"] == "2100"
    assert first["reference"] == "r0" and first["email"] == "buyer0@example.com"
    assert first["payment_hash"] == wanted[0].invoice.payment_hash
    assert first["paid_at"].endswith("Z")
    everything = exported(alice.get("/dashboard/invoices.csv"))
    assert len(everything) == 5
    formula = next(r for r in everything if r["invoice_id"] == sneaky.public_id)
    assert formula["description"] == '\'=HYPERLINK("http://evil")'
    # The list page's export link carries the same filter.
    page = text(alice.get("/dashboard/invoices", status="paid", email="buyer"))
    assert 'href="/dashboard/invoices.csv?status=paid&amp;email=buyer"' in page


def test_an_invoice_page_has_its_timeline_and_refunds_it_from_the_wallet(alice):
    checkout = sell(alice.merchant, 2100, user_ref="order-7")
    url = f"/dashboard/invoices/{checkout.public_id}"

    page = text(alice.get(url))
    assert checkout.invoice.payment_hash in page and checkout.invoice.bolt11 in page
    timeline = re.search(r'<ol class="timeline" id="timeline">(.*?)</ol>', page, re.S)[1]
    assert timeline.index("Invoice created") < timeline.index("Paid")
    assert re.search(r'id="refundable">2,100 sats<', page)

    too_much = alice.post(url, {"amount_sats": "5000"})
    assert too_much.status_code == 400
    assert "exceeds what is left to refund" in text(too_much)
    assert not Refund.objects.exists()

    made = alice.post(url, {"amount_sats": "700", "reason": "one cup short"})
    assert made.status_code == 302
    refund = Refund.objects.get()
    assert (refund.amount_msat, refund.state, refund.reason) == (
        700_000,
        "claimable",
        "one cup short",
    )
    after = text(alice.get(url))
    assert f"Refund {refund.public_id} created" in after
    assert "Refund of 700 sats" in after and re.search(r'id="refundable">1,400 sats<', after)
    assert claim_url(refund) in after  # the link to send to the buyer

    rest = alice.post(url, {})  # no amount: all that is left
    assert rest.status_code == 302
    assert sorted(Refund.objects.values_list("amount_msat", flat=True)) == [700_000, 1_400_000]
    assert "Nothing is left to refund." in text(alice.get(url))


def test_an_open_invoice_has_no_refund_form(alice):
    checkout = sell(alice.merchant, 2100, paid=False)
    page = text(alice.get(f"/dashboard/invoices/{checkout.public_id}"))
    assert "Waiting" not in page and 'id="refund"' not in page
    refused = alice.post(f"/dashboard/invoices/{checkout.public_id}", {})
    assert refused.status_code == 400
    assert "Only a paid payment can be refunded" in text(refused)
    assert not Refund.objects.exists()


# --- products and payment links --------------------------------------------------------


def test_a_product_made_on_the_site_has_a_payment_link_that_opens_a_fresh_checkout(alice):
    bad = alice.post("/dashboard/products/new", {"name": "Mug", "price": "0", "currency": "USD"})
    assert bad.status_code == 400 and "The price must be more than 0." in text(bad)
    fractional = alice.post(
        "/dashboard/products/new", {"name": "Mug", "price": "1.5", "currency": "SAT"}
    )
    assert "A price in SAT is a whole number of sats." in text(fractional)
    assert not Product.objects.exists()

    made = alice.post(
        "/dashboard/products/new",
        {
            "name": "Mug",
            "price": "2500",
            "currency": "SAT",
            "image_url": "https://img.example/mug.png",
            "active": "on",
        },
    )
    assert made.status_code == 302
    product = Product.objects.get(name="Mug")
    assert made["Location"] == f"/dashboard/products/{product.public_id}"
    link = f"http://testserver/pay/{product.public_id}"
    page = text(alice.get(made["Location"]))
    assert f'value="{link}"' in page
    assert f"&lt;a href=&quot;{link}&quot;" in page  # the button's HTML, to copy
    api = Client().get(
        f"/api/checkout/products/{product.public_id}", HTTP_X_API_KEY=alice.admin_key
    )
    assert api.json()["paymentLink"] == link

    opened = Client().get(f"/pay/{product.public_id}")
    assert opened.status_code == 302
    checkout = CheckoutInvoice.objects.get(product=product)
    assert opened["Location"] == f"/checkout/{checkout.public_id}"
    assert (checkout.sats_amount, checkout.status) == (2500, "unpaid")
    Client().get(f"/pay/{product.public_id}")
    assert CheckoutInvoice.objects.filter(product=product).count() == 2  # fresh each time

    edited = alice.post(
        f"/dashboard/products/{product.public_id}",
        {"name": "Mug", "price": "2500", "currency": "SAT", "image_url": ""},
    )  # "active" unticked
    assert edited.status_code == 302
    assert "has no payment link" in text(alice.get(edited["Location"]))
    gone = Client().get(f"/pay/{product.public_id}")
    assert gone.status_code == 404 and "This product is not for sale at the moment." in text(gone)
    assert (
        Client()
        .get(f"/api/checkout/products/{product.public_id}", HTTP_X_API_KEY=alice.admin_key)
        .json()["paymentLink"]
        is None
    )
    assert Client().get("/pay/prod_doesnotexist").status_code == 404
    german = Client().get(f"/pay/{product.public_id}", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    assert german.status_code == 404 and german["Content-Language"] == "de"
    assert "Dieses Produkt ist derzeit nicht erhältlich." in text(german)


def test_the_payment_link_is_rate_limited_per_address(alice, settings):
    cache.clear()  # other tests' calls from this address
    settings.CHECKOUT_PUBLIC_RATE_PER_MINUTE = 2
    product = create_product(alice.merchant, name="Tea", price=Decimal(100), currency="SAT")
    client = Client()
    codes = [client.get(f"/pay/{product.public_id}").status_code for _ in range(3)]
    assert codes == [302, 302, 429]


# --- settings and keys -----------------------------------------------------------------


def test_settings_are_checked_and_saved(alice):
    bad = alice.post(
        "/dashboard/settings",
        {
            "name": "Corner Café",
            "brand_colour": "red",
            "default_currency": "SAT",
            "notify_each_sale": "on",
        },
    )
    assert bad.status_code == 400
    assert "A brand colour is a hex colour" in text(bad)
    assert "Give an email address to be notified." in text(bad)

    saved = alice.post(
        "/dashboard/settings",
        {
            "name": "Corner Café & Co",
            "brand_colour": "#1a73e8",
            "logo_url": "https://img.example/logo.png",
            "website_url": "https://corner.example",
            "support_email": "help@corner.example",
            "email": "owner@corner.example",
            "default_currency": "EUR",
            "default_expiry_minutes": "30",
            "notify_each_sale": "on",
        },
    )
    assert saved.status_code == 302
    merchant = Merchant.objects.get(pk=alice.merchant.pk)
    assert merchant.name == "Corner Café & Co" and merchant.brand_colour == "#1a73e8"
    assert merchant.default_expiry_seconds == 1800 and merchant.default_currency == "EUR"
    assert merchant.notify_each_sale and not merchant.notify_daily_summary
    # The defaults apply: a new product form offers EUR; a new checkout lasts 30 minutes.
    assert 'value="EUR" selected' in text(alice.get("/dashboard/products/new"))
    checkout = sell(merchant, 100, paid=False)
    lifetime = checkout.invoice.expires_at - checkout.created_at
    assert timedelta(minutes=29) < lifetime <= timedelta(minutes=30, seconds=5)


def test_a_key_made_on_the_site_is_shown_once_works_and_is_revoked(alice):
    page = alice.post("/dashboard/keys", {"name": "Shop plugin", "kind": "invoice"})
    raw = re.search(r'id="new-key-value" type="text" readonly value="([^"]+)"', text(page))[1]
    key = ApiKey.objects.get(name="Shop plugin")
    assert raw.startswith("zg_") and key.kind == "invoice" and raw not in key.key_hash
    assert Client().get("/api/merchant/me", HTTP_X_API_KEY=raw).status_code == 200
    assert raw not in text(alice.get("/dashboard/keys"))  # shown once
    assert alice.post("/dashboard/keys", {"name": "", "kind": "admin"}).status_code == 400

    assert alice.post(f"/dashboard/keys/{key.pk}/revoke").status_code == 302
    assert Client().get("/api/merchant/me", HTTP_X_API_KEY=raw).status_code == 401


# --- tenancy -----------------------------------------------------------------------------


def test_staff_of_one_shop_see_nothing_of_another_even_by_guessing_urls(alice, bob):
    theirs = sell(alice.merchant, 2100, email="alice-buyer@example.com")
    product = create_product(alice.merchant, name="Secret beans", price=Decimal(5), currency="SAT")
    key = ApiKey.objects.get(merchant=alice.merchant)
    sell(bob.merchant, 300)

    assert bob.get(f"/dashboard/invoices/{theirs.public_id}").status_code == 404
    assert bob.post(f"/dashboard/invoices/{theirs.public_id}", {}).status_code == 404
    assert bob.get(f"/dashboard/products/{product.public_id}").status_code == 404
    assert (
        bob.post(
            f"/dashboard/products/{product.public_id}",
            {"name": "Mine now", "price": "1", "currency": "SAT"},
        ).status_code
        == 404
    )
    assert bob.post(f"/dashboard/keys/{key.pk}/revoke").status_code == 404
    assert not Refund.objects.exists()
    assert Product.objects.get(pk=product.pk).name == "Secret beans"
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None

    pages = "".join(
        text(bob.get(path))
        for path in ("/dashboard/", "/dashboard/invoices", "/dashboard/products", "/dashboard/keys")
    )
    assert theirs.public_id not in pages and "Secret beans" not in pages
    assert "alice-buyer" not in pages and key.prefix not in pages
    assert re.search(r'id="total-sats">300 sats<', text(bob.get("/dashboard/")))
    rows = exported(bob.get("/dashboard/invoices.csv"))
    assert [r["sats"] for r in rows] == ["300"]
    assert listed(bob.get("/dashboard/invoices", q=theirs.public_id)) == []
