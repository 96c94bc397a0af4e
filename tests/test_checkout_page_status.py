"""The public status endpoint and the server-rendered checkout page (no browser)."""

import re
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from checkout.models import CheckoutInvoice, Merchant, Product
from lightning import services
from lightning.backends import get_backend
from lightning.models import Invoice

pytestmark = pytest.mark.django_db


def make_checkout(
    merchant=None,
    *,
    sats=21_000,
    amount="12.50",
    currency="USD",
    product=None,
    description="Two espressos",
    redirect_url="",
    quantity=1,
    expiry_seconds=900,
):
    """A checkout as the API's create service makes one: a node invoice, then the row."""
    merchant = merchant or Merchant.objects.create(name="Corner Café")
    invoice = services.create_invoice(
        sats * 1000, description, expiry_seconds=expiry_seconds, purpose="checkout"
    )
    return CheckoutInvoice.objects.create(
        merchant=merchant,
        invoice=invoice,
        product=product,
        quantity=quantity,
        amount=Decimal(amount),
        currency=currency,
        sats_amount=sats,
        description=description,
        redirect_url=redirect_url,
    )


def pay(checkout):
    """The buyer's wallet pays, and the watcher's step is applied in-process."""
    backend = get_backend()
    backend.pay_invoice(checkout.invoice.bolt11)
    services.apply_settlements([backend.lookup_invoice(checkout.invoice.payment_hash)])


def iso(moment):
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def expire(checkout):
    Invoice.objects.filter(pk=checkout.invoice_id).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )


def test_status_of_an_unpaid_checkout(client):
    checkout = make_checkout()
    response = client.get(f"/checkout/{checkout.public_id}/status")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body == {
        "invoiceId": checkout.public_id,
        "status": "unpaid",
        "amount": "12.50",
        "currency": "USD",
        "lightningInvoice": checkout.invoice.bolt11,
        "expiresAt": iso(checkout.invoice.expires_at),
        "isDemo": True,
        "satsAmount": 21_000,
        "paidAt": None,
    }


def test_status_of_a_paid_checkout_has_its_payment_time():
    checkout = make_checkout(sats=2100, amount="2100", currency="SAT")
    pay(checkout)
    body = Client().get(f"/checkout/{checkout.public_id}/status").json()
    paid_at = Invoice.objects.get(pk=checkout.invoice_id).paid_at
    assert (body["status"], body["paidAt"]) == ("paid", iso(paid_at))
    assert (body["amount"], body["currency"], body["satsAmount"]) == ("2100", "SAT", 2100)


def test_status_of_an_expired_checkout():
    checkout = make_checkout()
    expire(checkout)
    body = Client().get(f"/checkout/{checkout.public_id}/status").json()
    assert (body["status"], body["paidAt"]) == ("expired", None)


def test_status_is_not_demo_for_an_invoice_of_a_real_node():
    checkout = make_checkout()
    Invoice.objects.filter(pk=checkout.invoice_id).update(backend="lnd")
    assert Client().get(f"/checkout/{checkout.public_id}/status").json()["isDemo"] is False


def test_status_of_an_unknown_checkout_is_a_404_problem():
    response = Client().get("/checkout/inv_doesnotexist/status")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["error"]) == (404, "not_found")
    assert "inv_doesnotexist" in body["detail"]


def test_status_is_one_query(django_assert_num_queries):
    checkout = make_checkout()
    with django_assert_num_queries(1):
        assert Client().get(f"/checkout/{checkout.public_id}/status").status_code == 200


def test_page_shows_merchant_amounts_and_the_invoice(client):
    checkout = make_checkout(sats=21_000, amount="12.50", currency="USD")
    response = client.get(f"/checkout/{checkout.public_id}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Corner Café" in html and "Two espressos" in html
    assert "$12.50" in html and "21,000 sats" in html
    assert f'href="lightning:{checkout.invoice.bolt11}"' in html
    assert "<svg" in html and "Waiting for payment" in html
    assert "default-src 'self'" in response["Content-Security-Policy"]


def test_page_references_only_local_assets(client):
    checkout = make_checkout()
    html = client.get(f"/checkout/{checkout.public_id}").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for url in assets:
        assert url.startswith(("/", "lightning:")), url
    for url in (u for u in assets if u.startswith("/static/")):
        assert client.get(url).status_code == 200, url


def test_dev_wallet_button_only_in_dev_mode_on_the_dev_node(client, settings):
    checkout = make_checkout()
    settings.DEV_MODE = False
    assert (
        "Pay with the dev wallet"
        not in client.get(f"/checkout/{checkout.public_id}").content.decode()
    )
    settings.DEV_MODE = True
    assert (
        "Pay with the dev wallet" in client.get(f"/checkout/{checkout.public_id}").content.decode()
    )


def test_unknown_checkout_page_is_a_404_page(client):
    response = client.get("/checkout/inv_doesnotexist")
    assert response.status_code == 404
    assert "Checkout not found" in response.content.decode()


def test_expired_product_checkout_offers_to_start_again(client):
    merchant = Merchant.objects.create(name="Corner Café")
    product = Product.objects.create(merchant=merchant, name="Beans", price="12.50", currency="USD")
    checkout = make_checkout(merchant, product=product)
    expire(checkout)
    html = client.get(f"/checkout/{checkout.public_id}").content.decode()
    assert "This invoice has expired" in html and "Start again" in html
    assert f"/api/checkout/products/{product.public_id}/checkout" in html


def test_expired_amount_checkout_sends_the_buyer_back_to_the_shop(client):
    checkout = make_checkout()
    expire(checkout)
    html = client.get(f"/checkout/{checkout.public_id}").content.decode()
    assert "This invoice has expired" in html and "Start again" not in html
    assert "Please go back to Corner Café" in html


def test_only_http_redirect_urls_are_offered(client):
    checkout = make_checkout(redirect_url="https://shop.example/thanks?order=7")
    pay(checkout)
    html = client.get(f"/checkout/{checkout.public_id}").content.decode()
    assert 'href="https://shop.example/thanks?order=7"' in html
    CheckoutInvoice.objects.filter(pk=checkout.pk).update(redirect_url="javascript:alert(1)")
    assert "javascript:" not in client.get(f"/checkout/{checkout.public_id}").content.decode()


def test_privacy_and_terms_have_default_text(client):
    assert "What is stored" in client.get("/privacy").content.decode()
    assert "Paying" in client.get("/terms").content.decode()


def test_privacy_and_terms_show_the_operators_text(client, settings, tmp_path):
    (tmp_path / "privacy.txt").write_text("We keep nothing.\n\nReally <nothing>.")
    (tmp_path / "terms.txt").write_text("Be nice.")
    settings.PRIVACY_POLICY_FILE = str(tmp_path / "privacy.txt")
    settings.TERMS_OF_SERVICE_FILE = str(tmp_path / "terms.txt")
    privacy = client.get("/privacy").content.decode()
    assert "<p>We keep nothing.</p>" in privacy and "Really &lt;nothing&gt;." in privacy
    assert "What is stored" not in privacy
    assert "Be nice." in client.get("/terms").content.decode()
