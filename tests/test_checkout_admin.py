"""The merchant admin: staff of one merchant see and change only that merchant's rows; the
operator's superuser sees all; keys are shown once and stored hashed; the sales summary."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.http import HttpRequest
from django.utils import timezone

from checkout.models import ApiKey, Merchant, Product
from checkout.services import issue_api_key
from checkout.staff import MERCHANT_STAFF_GROUP, create_merchant_user
from lightning.models import Invoice

from .test_checkout_page_status import make_checkout, pay

pytestmark = pytest.mark.django_db

ADMIN = "/admin/checkout"


def shop(name):
    merchant = Merchant.objects.create(name=name)
    product = Product.objects.create(
        merchant=merchant, name=f"{name} beans", price="12.50", currency="USD"
    )
    checkout = make_checkout(merchant, description=f"{name} order", sats=1000)
    key, _ = issue_api_key(merchant, ApiKey.Kind.INVOICE, f"{name} till")
    return merchant, product, checkout, key


@pytest.fixture
def shops():
    return shop("Corner Café"), shop("Rival Roasters")


@pytest.fixture
def staff_client(client, shops):
    (merchant, *_), _ = shops
    client.force_login(create_merchant_user("alice", merchant, "a long passphrase 42"))
    return client


@pytest.fixture
def operator_client(client):
    client.force_login(
        get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    )
    return client


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def test_staff_lists_show_only_their_merchants_rows(staff_client, shops):
    (_, product, checkout, key), (_, other_product, other_checkout, other_key) = shops
    products = page(staff_client, f"{ADMIN}/product/")
    assert product.name in products and other_product.name not in products
    checkouts = page(staff_client, f"{ADMIN}/checkoutinvoice/")
    assert checkout.public_id in checkouts and other_checkout.public_id not in checkouts
    keys = page(staff_client, f"{ADMIN}/apikey/")
    assert key.name in keys and other_key.name not in keys
    assert "Merchants" not in page(staff_client, "/admin/")


@pytest.mark.parametrize("view", ["change", "delete", "history"])
def test_staff_cannot_open_another_merchants_rows(staff_client, shops, view):
    _, (_, other_product, other_checkout, other_key) = shops
    for model, obj in (
        ("product", other_product),
        ("checkoutinvoice", other_checkout),
        ("apikey", other_key),
    ):
        response = staff_client.get(f"{ADMIN}/{model}/{obj.pk}/{view}/", follow=True)
        html = response.content.decode()
        if view == "delete" and model != "product":
            assert response.status_code == 403  # staff delete no invoice and no key
        else:
            assert response.redirect_chain == [("/admin/", 302)], (model, view)
            assert "doesn’t exist" in html
        assert str(obj) not in html


def test_staff_cannot_change_another_merchants_product(staff_client, shops):
    _, (_, other_product, _, _) = shops
    form = {"name": "Hijacked", "description": "", "price": "1", "currency": "SAT"}
    staff_client.post(f"{ADMIN}/product/{other_product.pk}/change/", form)
    other_product.refresh_from_db()
    assert other_product.name == "Rival Roasters beans"


def test_staff_add_a_product_to_their_merchant(staff_client, shops):
    (merchant, *_), (other, *_) = shops
    form_page = page(staff_client, f"{ADMIN}/product/add/")
    assert 'name="merchant"' not in form_page
    form = {"name": "Cold brew", "description": "", "price": "4.20", "currency": "EUR"}
    form |= {"image_url": "", "active": "on"}
    staff_client.post(f"{ADMIN}/product/add/", form)
    added = Product.objects.get(name="Cold brew")
    assert added.merchant == merchant
    # Even a forged merchant field does not move the product elsewhere.
    staff_client.post(f"{ADMIN}/product/add/", form | {"name": "Forged", "merchant": other.pk})
    assert Product.objects.get(name="Forged").merchant == merchant


def test_deleting_a_product_with_checkouts_archives_it(staff_client, shops):
    (merchant, product, _, _), _ = shops
    make_checkout(merchant, product=product)
    response = staff_client.post(f"{ADMIN}/product/{product.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.archived, product.active) == (True, False)


def test_operator_sees_every_merchant(operator_client, shops):
    (_, product, checkout, key), (_, other_product, other_checkout, other_key) = shops
    products = page(operator_client, f"{ADMIN}/product/")
    assert product.name in products and other_product.name in products
    checkouts = page(operator_client, f"{ADMIN}/checkoutinvoice/")
    assert checkout.public_id in checkouts and other_checkout.public_id in checkouts
    keys = page(operator_client, f"{ADMIN}/apikey/")
    assert key.name in keys and other_key.name in keys
    merchants = page(operator_client, f"{ADMIN}/merchant/")
    assert "Corner Café" in merchants and "Rival Roasters" in merchants
    page(operator_client, f"{ADMIN}/checkoutinvoice/{other_checkout.pk}/change/")


def test_a_staff_user_without_a_merchant_sees_no_rows(client, shops):
    user = get_user_model().objects.create_user("drifter", password="x", is_staff=True)
    from checkout.staff import ensure_merchant_staff_group

    user.groups.add(ensure_merchant_staff_group())
    client.force_login(user)
    assert client.get(f"{ADMIN}/product/").status_code == 403


def test_creating_a_key_shows_it_once_and_stores_only_its_hash(staff_client, shops):
    (merchant, *_), _ = shops
    response = staff_client.post(f"{ADMIN}/apikey/add/", {"name": "Webshop", "kind": "invoice"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = re.search(r'value="(zg_inv_[^"]+)"', response.content.decode()).group(1)
    key = ApiKey.objects.get(name="Webshop")
    assert key.merchant == merchant and key.kind == "invoice"
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in [getattr(key, f.attname) for f in ApiKey._meta.concrete_fields]
    for url in (f"{ADMIN}/apikey/", f"{ADMIN}/apikey/{key.pk}/change/"):
        html = page(staff_client, url)
        assert raw not in html and key.key_hash not in html
        assert key.prefix in html
    # The key works with the API's authentication.
    from checkout.auth import ApiKeyAuthentication

    request = type("R", (), {"META": {"HTTP_X_API_KEY": raw}})()
    assert ApiKeyAuthentication().authenticate(request)[1] == key


def test_revoke_action_revokes_only_the_users_own_keys(staff_client, shops):
    (_, _, _, key), (_, _, _, other_key) = shops
    response = staff_client.post(
        f"{ADMIN}/apikey/",
        {"action": "revoke_keys", "_selected_action": [key.pk, other_key.pk]},
        follow=True,
    )
    assert "Revoked 1 key(s)." in response.content.decode()
    key.refresh_from_db()
    other_key.refresh_from_db()
    assert key.revoked_at is not None and other_key.revoked_at is None
    assert key.name in page(staff_client, f"{ADMIN}/apikey/", state="revoked")
    assert key.name not in page(staff_client, f"{ADMIN}/apikey/", state="active")


def test_checkout_invoices_are_read_only(staff_client, shops):
    (_, _, checkout, _), _ = shops
    assert staff_client.get(f"{ADMIN}/checkoutinvoice/add/").status_code == 403
    html = page(staff_client, f"{ADMIN}/checkoutinvoice/{checkout.pk}/change/")
    assert checkout.invoice.payment_hash in html and 'name="description"' not in html
    staff_client.post(f"{ADMIN}/checkoutinvoice/{checkout.pk}/change/", {"description": "x"})
    checkout.refresh_from_db()
    assert checkout.description == "Corner Café order"


def test_checkout_invoice_filters_and_search(staff_client, shops):
    (merchant, _, unpaid, _), _ = shops
    paid = make_checkout(merchant, description="Paid order")
    paid.user_ref = "order-7781"
    paid.email = "buyer@example.com"
    paid.save()
    pay(paid)
    expired = make_checkout(merchant, description="Late order")
    Invoice.objects.filter(pk=expired.invoice_id).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    listing = f"{ADMIN}/checkoutinvoice/"

    def ids(**params):
        html = page(staff_client, listing, **params)
        return {c.public_id for c in (unpaid, paid, expired) if c.public_id in html}

    assert ids(status="paid") == {paid.public_id}
    assert ids(status="unpaid") == {unpaid.public_id}
    assert ids(status="expired") == {expired.public_id}
    assert ids(q="order-7781") == {paid.public_id}
    assert ids(q=paid.invoice.payment_hash) == {paid.public_id}
    assert ids(q="buyer@example.com") == {paid.public_id}
    # The date filter's own "Today" link, and one for tomorrow.
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    assert len(ids(created_at__gte=str(today), created_at__lt=str(tomorrow))) == 3
    assert ids(created_at__gte=str(tomorrow)) == set()


def test_index_shows_paid_count_and_revenue_today_and_last_7_days(client, shops):
    (merchant, *_), (other, *_) = shops
    for sats in (1000, 2500):
        pay(make_checkout(merchant, sats=sats))
    earlier = make_checkout(merchant, sats=4000)
    pay(earlier)
    Invoice.objects.filter(pk=earlier.invoice_id).update(paid_at=timezone.now() - timedelta(days=3))
    old = make_checkout(merchant, sats=50_000)
    pay(old)
    Invoice.objects.filter(pk=old.invoice_id).update(paid_at=timezone.now() - timedelta(days=8))
    pay(make_checkout(other, sats=9999))
    make_checkout(merchant, sats=777)  # unpaid: not counted

    def summary(html):
        rows = {}
        for row in ("today", "week"):
            cells = re.search(rf'id="sales-{row}">.*?<td>(.*?)</td>\s*<td>(.*?)</td>', html, re.S)
            rows[row] = cells.groups()
        return rows

    client.force_login(create_merchant_user("alice", merchant, "a long passphrase 42"))
    staff_index = page(client, "/admin/")
    assert summary(staff_index) == {
        "today": ("2", "3,500 sats"),
        "week": ("3", "7,500 sats"),
    }
    assert '<a href="/dashboard/">Charts, invoices and refunds' in staff_index
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    assert summary(page(client, "/admin/")) == {
        "today": ("3", "13,499 sats"),
        "week": ("4", "17,499 sats"),
    }


def test_create_merchant_user_command(client, shops):
    (merchant, *_), _ = shops
    call_command("create_merchant_user", "bob", merchant=merchant.public_id, password="pw-b-12345")
    bob = get_user_model().objects.get(username="bob")
    assert bob.is_staff and not bob.is_superuser
    assert bob.merchant_link.merchant == merchant
    assert list(bob.groups.values_list("name", flat=True)) == [MERCHANT_STAFF_GROUP]
    assert bob.has_perm("checkout.add_apikey") and not bob.has_perm("checkout.add_merchant")
    assert bob.has_perm("checkout.view_checkoutinvoice")
    assert not bob.has_perm("checkout.change_checkoutinvoice")
    assert client.login(request=HttpRequest(), username="bob", password="pw-b-12345")
    assert "Corner Café beans" in page(client, f"{ADMIN}/product/")

    with pytest.raises(CommandError, match="No merchant"):
        call_command("create_merchant_user", "carol", merchant="mch_nope")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_merchant_user", "bob", merchant=merchant.public_id)


def test_create_merchant_user_generates_a_password_when_none_is_given(client, shops, capsys):
    (merchant, *_), _ = shops
    call_command("create_merchant_user", "dora", merchant=merchant.public_id)
    password = capsys.readouterr().out.strip().splitlines()[-1]
    assert client.login(request=HttpRequest(), username="dora", password=password)


def test_staff_manage_their_merchants_webhook_endpoints(staff_client, shops):
    from webhooks.services import create_endpoint

    (merchant, *_), (other, *_) = shops
    create_endpoint(merchant, url="https://shop.example/hooks", events=["*"])
    create_endpoint(other, url="https://rival.example/hooks", events=["*"])
    endpoints = page(staff_client, "/admin/webhooks/webhookendpoint/")
    assert "shop.example" in endpoints and "rival.example" not in endpoints
    page(staff_client, "/admin/webhooks/webhookdelivery/")
    assert "Webhook" in page(staff_client, "/admin/")


def test_staff_manage_their_merchants_paid_content_and_proxies(staff_client, shops):
    from l402.models import PaidContent

    (merchant, *_), (other, *_) = shops
    PaidContent.objects.create(merchant=merchant, slug="ours", title="Our report", price_sats=5)
    PaidContent.objects.create(merchant=other, slug="theirs", title="Rival report", price_sats=5)
    content = page(staff_client, "/admin/l402/paidcontent/")
    assert "Our report" in content and "Rival report" not in content
    page(staff_client, "/admin/l402/proxy/")
    page(staff_client, "/admin/l402/l402challenge/")
