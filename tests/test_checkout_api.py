"""The checkout REST API: products, checkout invoices, the keyless product checkout, keys,
bad input (always a 4xx problem, never a 500 or a half-written row), statuses, and
idempotent creates under concurrency."""

import io
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from checkout.models import ApiKey, CheckoutInvoice, IdempotencyKey, Product
from checkout.serializers import CheckoutInvoiceCreateSerializer
from checkout.services import create_merchant, issue_api_key, request_fingerprint, revoke_api_key
from lightning import invoice_codec
from lightning import services as lightning_services
from lightning.backends import get_backend
from lightning.models import DevNodeInvoice, Invoice

PRODUCTS = "/api/checkout/products"
INVOICES = "/api/checkout/invoices"


class Api:
    """A client of the API with one key."""

    def __init__(self, key=None):
        self.client = Client()
        self.key = key

    def _headers(self, headers):
        base = {"X-Api-Key": self.key} if self.key else {}
        return {**base, **(headers or {})}

    def get(self, url, headers=None, **params):
        return self.client.get(url, params, headers=self._headers(headers))

    def send(self, method, url, body=None, headers=None, raw=None):
        import json

        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.generic(
            method, url, data, content_type="application/json", headers=self._headers(headers)
        )

    def post(self, url, body=None, **kw):
        return self.send("POST", url, body, **kw)


@pytest.fixture(autouse=True)
def _clean_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def shop(db):
    merchant, admin_key = create_merchant("Shop A", "a@example.com")
    _, invoice_key = issue_api_key(merchant, ApiKey.Kind.INVOICE, "Invoice key")
    return type(
        "Shop",
        (),
        {"merchant": merchant, "admin": Api(admin_key), "invoice": Api(invoice_key)},
    )


@pytest.fixture
def other_shop(db):
    merchant, admin_key = create_merchant("Shop B")
    return type("Shop", (), {"merchant": merchant, "admin": Api(admin_key)})


def rows():
    return (
        CheckoutInvoice.objects.count(),
        Invoice.objects.count(),
        DevNodeInvoice.objects.count(),
        IdempotencyKey.objects.count(),
    )


def assert_problem(response, status, error=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"] and body["type"]
    if error:
        assert body["error"] == error, body
    return body


def make_product(shop, **fields):
    body = {"name": "Beans", "price": "12.50", "currency": "USD", **fields}
    response = shop.admin.post(PRODUCTS, body)
    assert response.status_code == 201, response.content
    return response.json()


def pay(checkout_json):
    get_backend().pay_invoice(checkout_json["lightningInvoice"])
    node_invoice = get_backend().lookup_invoice(checkout_json["paymentHash"])
    lightning_services.apply_settlements([node_invoice])


# --- Products ----------------------------------------------------------------------------


def test_product_lifecycle(shop):
    created = make_product(
        shop, description="Dark roast", imageUrl="https://shop.example/beans.png"
    )
    assert created["productId"].startswith("prod_")
    assert created["price"] == "12.50" and created["currency"] == "USD"
    assert created["active"] is True and created["imageUrl"] == "https://shop.example/beans.png"
    assert created["createdAt"] and created["updatedAt"]
    url = f"{PRODUCTS}/{created['productId']}"

    assert shop.invoice.get(url).json() == created  # an invoice key may read
    listed = shop.invoice.get(PRODUCTS).json()
    assert listed == {"items": [created], "total": 1}

    patched = shop.admin.send("PATCH", url, {"price": "13", "active": False})
    assert patched.status_code == 200, patched.content
    assert patched.json()["price"] == "13.00" and patched.json()["active"] is False
    assert patched.json()["name"] == "Beans"
    assert shop.admin.get(PRODUCTS, active="true").json()["total"] == 0
    assert shop.admin.get(PRODUCTS, active="false").json()["total"] == 1

    put = shop.admin.send("PUT", url, {"name": "Stickers", "price": "2100", "currency": "SAT"})
    assert put.status_code == 200, put.content
    body = put.json()
    assert (body["name"], body["price"], body["currency"]) == ("Stickers", "2100", "SAT")

    assert shop.admin.send("DELETE", url).status_code == 204
    assert not Product.objects.exists()  # no checkouts: really deleted
    assert_problem(shop.admin.get(url), 404, "not_found")


def test_deleting_a_sold_product_archives_it_and_it_cannot_be_bought(shop):
    product = make_product(shop)
    url = f"{PRODUCTS}/{product['productId']}"
    assert shop.invoice.post(INVOICES, {"productId": product["productId"]}).status_code == 201
    assert shop.admin.send("DELETE", url).status_code == 204

    row = Product.objects.get(public_id=product["productId"])
    assert row.archived and not row.active
    assert CheckoutInvoice.objects.get().product == row  # the sale keeps its product
    assert_problem(shop.admin.get(url), 404, "not_found")
    assert shop.admin.get(PRODUCTS).json() == {"items": [], "total": 0}
    assert_problem(shop.admin.send("PATCH", url, {"active": True}), 404)
    before = rows()
    bought = shop.invoice.post(INVOICES, {"productId": product["productId"]})
    assert_problem(bought, 404, "not_found")
    assert "productId" in bought.json()["errors"]
    assert_problem(Api().post(f"{url}/checkout"), 404, "not_found")
    assert rows() == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": "x", "currency": "USD"}, "price"),
        ({"name": "x", "price": "1.00"}, "currency"),
        ({"name": "x", "price": "0", "currency": "USD"}, "price"),
        ({"name": "x", "price": "-5", "currency": "USD"}, "price"),
        ({"name": "x", "price": "1.001", "currency": "USD"}, "price"),
        ({"name": "x", "price": "1e30", "currency": "USD"}, "price"),
        ({"name": "x", "price": "abc", "currency": "USD"}, "price"),
        ({"name": "x", "price": True, "currency": "USD"}, "price"),
        ({"name": "x", "price": "10.5", "currency": "SAT"}, "price"),
        ({"name": "x", "price": "1", "currency": "BTC"}, "currency"),
        ({"name": 5, "price": "1", "currency": "USD"}, "name"),
        ({"name": "x" * 201, "price": "1", "currency": "USD"}, "name"),
        ({"name": "x", "price": "1", "currency": "USD", "active": "yes"}, "active"),
        ({"name": "x", "price": "1", "currency": "USD", "imageUrl": "javascript:x"}, "imageUrl"),
        ({"name": "x", "price": "1", "currency": "USD", "colour": "red"}, "colour"),
    ],
)
def test_bad_product_input_is_a_400_naming_the_field(shop, body, field):
    response = shop.admin.post(PRODUCTS, body)
    problem = assert_problem(response, 400, "validation_error")
    assert field in problem["errors"], problem
    assert not Product.objects.exists()


def test_bad_product_update_changes_nothing(shop):
    product = make_product(shop, price="2100", currency="SAT")
    url = f"{PRODUCTS}/{product['productId']}"
    # 2100.00 SAT is whole; switching to a fractional price in SAT is not allowed.
    assert_problem(shop.admin.send("PATCH", url, {"price": "1.50"}), 400, "sat_amount_not_whole")
    assert_problem(shop.admin.send("PUT", url, {"name": "only a name"}), 400, "validation_error")
    assert shop.admin.get(url).json() == product


def test_product_writes_need_an_admin_key(shop):
    product = make_product(shop)
    url = f"{PRODUCTS}/{product['productId']}"
    assert_problem(shop.invoice.post(PRODUCTS, {"name": "x", "price": "1", "currency": "USD"}), 403)
    assert_problem(shop.invoice.send("PATCH", url, {"name": "y"}), 403, "forbidden")
    assert_problem(shop.invoice.send("PUT", url, {"name": "y"}), 403)
    assert_problem(shop.invoice.send("DELETE", url), 403)
    assert Product.objects.get().name == "Beans"


def test_another_merchants_product_is_a_404(shop, other_shop):
    product = make_product(shop)
    url = f"{PRODUCTS}/{product['productId']}"
    for response in (
        other_shop.admin.get(url),
        other_shop.admin.send("PATCH", url, {"name": "mine"}),
        other_shop.admin.send("PUT", url, {"name": "mine", "price": "1", "currency": "USD"}),
        other_shop.admin.send("DELETE", url),
    ):
        assert_problem(response, 404, "not_found")
    assert other_shop.admin.get(PRODUCTS).json() == {"items": [], "total": 0}
    before = rows()
    taken = other_shop.admin.post(INVOICES, {"productId": product["productId"]})
    assert "productId" in assert_problem(taken, 404, "not_found")["errors"]
    assert rows() == before
    assert Product.objects.get().name == "Beans"


def test_product_list_is_paginated(shop):
    for i in range(5):
        make_product(shop, name=f"P{i}")
    page = shop.admin.get(PRODUCTS, limit=2, offset=1).json()
    assert page["total"] == 5 and [p["name"] for p in page["items"]] == ["P3", "P2"]
    assert_problem(shop.admin.get(PRODUCTS, limit=0), 400)
    assert_problem(shop.admin.get(PRODUCTS, limit=101), 400)
    assert_problem(shop.admin.get(PRODUCTS, active="maybe"), 400)


# --- Keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [PRODUCTS, INVOICES])
def test_missing_unknown_and_revoked_keys_are_401(shop, url):
    assert_problem(Api().get(url), 401, "unauthorized")
    assert_problem(Api("zg_admin_nonsense").get(url), 401, "unauthorized")
    assert shop.admin.get(url).status_code == 200
    revoke_api_key(ApiKey.objects.get(merchant=shop.merchant, kind="admin"))
    assert_problem(shop.admin.get(url), 401, "unauthorized")
    before = rows()
    assert_problem(shop.admin.post(INVOICES, {"amount": "100", "currency": "SAT"}), 401)
    assert rows() == before


def test_create_merchant_prints_a_working_admin_key_on_the_last_line(db):
    out = io.StringIO()
    call_command("create_merchant", "Corner Shop", "--email", "c@example.com", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("zg_admin_") and " " not in key
    api = Api(key)
    response = api.post(PRODUCTS, {"name": "Tea", "price": "3.00", "currency": "EUR"})
    assert response.status_code == 201
    row = ApiKey.objects.get(kind="admin", merchant__name="Corner Shop")
    assert row.key_hash != key and key not in row.key_hash  # stored hashed only
    assert row.last_used_at is not None
    assert row.merchant.email == "c@example.com"


# --- Checkout invoices ---------------------------------------------------------------------


def test_create_a_checkout_invoice_by_amount(shop, settings):
    settings.PUBLIC_BASE_URL = "https://pay.example.com"
    response = shop.invoice.post(
        INVOICES,
        {
            "amount": "12.34",
            "currency": "USD",
            "description": "Order 17",
            "userRef": "order-17",
            "email": "buyer@example.com",
            "sendEmail": True,
            "redirectUrl": "https://shop.example/thanks",
            "expiresInSeconds": 600,
            "metadata": {"cart": [1, 2], "note": "gift"},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    # 12.34 USD at 100000 USD/BTC = 12340 sats exactly.
    assert body["amount"] == "12.34" and body["currency"] == "USD"
    assert body["satsAmount"] == 12340
    assert body["rate"] == "100000" and body["rateSource"] == "fixed"
    assert body["status"] == "unpaid" and body["paidAt"] is None
    assert body["invoiceId"].startswith("inv_")
    assert body["checkoutUrl"] == f"https://pay.example.com/checkout/{body['invoiceId']}"
    assert body["userRef"] == "order-17" and body["metadata"] == {"cart": [1, 2], "note": "gift"}
    assert (
        body["description"] == "Order 17" and body["redirectUrl"] == "https://shop.example/thanks"
    )
    assert body["email"] == "buyer@example.com" and body["sendEmail"] is True
    decoded = invoice_codec.decode_invoice(body["lightningInvoice"])
    assert decoded.amount_msat == 12340 * 1000
    assert decoded.payment_hash == body["paymentHash"]
    assert decoded.description == "Order 17"
    assert decoded.expiry_time - decoded.date == 600  # the BOLT11 expiry is the checkout's
    invoice = Invoice.objects.get(payment_hash=body["paymentHash"])
    assert (invoice.expires_at - invoice.created_at) == timedelta(seconds=600)
    assert body["expiresAt"] == invoice.expires_at.isoformat().replace("+00:00", "Z")
    checkout = CheckoutInvoice.objects.get(public_id=body["invoiceId"])
    assert checkout.rate == Decimal("100000") and checkout.rate_source == "fixed"
    assert shop.invoice.get(f"{INVOICES}/{body['invoiceId']}").json() == body


def test_create_a_checkout_invoice_for_a_product(shop):
    product = make_product(shop, name="Filter 1 kg", price="29.00", currency="EUR")
    response = shop.invoice.post(INVOICES, {"productId": product["productId"], "quantity": 3})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["amount"] == "87.00" and body["currency"] == "EUR"
    # 87 EUR at 92000 EUR/BTC: 94565.217... sats, rounded up.
    assert body["satsAmount"] == 94566
    assert body["productId"] == product["productId"] and body["quantity"] == 3
    assert body["description"] == "Filter 1 kg"  # the product's name by default
    assert body["userRef"] is None and body["metadata"] == {}
    assert body["rate"] == "92000"
    defaults = CheckoutInvoice.objects.get().invoice
    assert defaults.expires_at - defaults.created_at == timedelta(seconds=900)


def test_create_in_sats(shop):
    body = shop.invoice.post(INVOICES, {"amount": "2100", "currency": "SAT"}).json()
    assert body["amount"] == "2100" and body["satsAmount"] == 2100
    assert body["rate"] is None and body["rateSource"] is None
    assert Invoice.objects.get().amount_msat == 2_100_000


def test_an_inactive_product_cannot_be_bought(shop):
    product = make_product(shop, active=False)
    before = rows()
    assert_problem(
        shop.invoice.post(INVOICES, {"productId": product["productId"]}), 409, "product_inactive"
    )
    assert_problem(Api().post(f"{PRODUCTS}/{product['productId']}/checkout"), 404)
    assert rows() == before


BAD_CREATES = [
    ({}, "body"),
    ({"currency": "USD"}, "amount"),
    ({"amount": "5"}, "currency"),
    ({"amount": "5", "currency": "USD", "productId": "prod_x"}, "body"),
    ({"amount": "5", "currency": "USD", "quantity": 2}, "quantity"),
    ({"amount": "-5", "currency": "USD"}, "amount"),
    ({"amount": "0", "currency": "SAT"}, "amount"),
    ({"amount": "1.5", "currency": "SAT"}, "amount"),
    ({"amount": "99999999999999999999", "currency": "USD"}, "amount"),
    ({"amount": "NaN", "currency": "USD"}, "amount"),
    ({"amount": [5], "currency": "USD"}, "amount"),
    ({"amount": "5", "currency": "DOGE"}, "currency"),
    ({"productId": 12}, "productId"),
    ({"productId": "prod_x", "quantity": 0}, "quantity"),
    ({"productId": "prod_x", "quantity": "2"}, "quantity"),
    ({"productId": "prod_x", "quantity": 1.5}, "quantity"),
    ({"amount": "5", "currency": "USD", "expiresInSeconds": 59}, "expiresInSeconds"),
    ({"amount": "5", "currency": "USD", "expiresInSeconds": 86401}, "expiresInSeconds"),
    ({"amount": "5", "currency": "USD", "expiresInSeconds": "900"}, "expiresInSeconds"),
    ({"amount": "5", "currency": "USD", "userRef": "r" * 129}, "userRef"),
    ({"amount": "5", "currency": "USD", "userRef": 17}, "userRef"),
    ({"amount": "5", "currency": "USD", "metadata": [1, 2]}, "metadata"),
    ({"amount": "5", "currency": "USD", "metadata": "{}"}, "metadata"),
    ({"amount": "5", "currency": "USD", "metadata": {"x": "y" * 9000}}, "metadata"),
    ({"amount": "5", "currency": "USD", "email": "not-an-email"}, "email"),
    ({"amount": "5", "currency": "USD", "sendEmail": True}, "email"),
    ({"amount": "5", "currency": "USD", "sendEmail": "yes", "email": "a@b.co"}, "sendEmail"),
    ({"amount": "5", "currency": "USD", "redirectUrl": "javascript:alert(1)"}, "redirectUrl"),
    ({"amount": "5", "currency": "USD", "redirectUrl": "ftp://x.example/"}, "redirectUrl"),
    ({"amount": "5", "currency": "USD", "description": "d" * 501}, "description"),
    ({"amount": "5", "currency": "USD", "userref": "typo"}, "userref"),
]


def test_an_unknown_product_is_a_404_naming_the_field(shop):
    before = rows()
    problem = assert_problem(
        shop.invoice.post(INVOICES, {"productId": "prod_unknown"}), 404, "not_found"
    )
    assert "productId" in problem["errors"], problem
    assert rows() == before


@pytest.mark.parametrize("body, field", BAD_CREATES)
def test_bad_create_input_is_a_400_naming_the_field_and_writes_nothing(shop, body, field):
    before = rows()
    problem = assert_problem(shop.invoice.post(INVOICES, body), 400, "validation_error")
    assert field in problem["errors"], problem
    assert rows() == before


@pytest.mark.parametrize(
    "raw", ["{not json", "[1, 2]", '"a string"', "null", "12"], ids=lambda r: r[:8]
)
def test_a_body_that_is_not_a_json_object_is_a_400(shop, raw):
    before = rows()
    response = shop.invoice.post(INVOICES, raw=raw)
    assert_problem(response, 400)
    assert response.json()["error"] in ("malformed_json", "validation_error")
    assert rows() == before


def test_a_non_json_content_type_is_a_415(shop):
    response = shop.invoice.client.post(
        INVOICES,
        "amount=5&currency=USD",
        content_type="application/x-www-form-urlencoded",
        headers={"X-Api-Key": shop.invoice.key},
    )
    assert_problem(response, 415, "unsupported_media_type")


def test_more_than_the_largest_invoice_is_refused(shop, settings):
    settings.CHECKOUT_MAX_INVOICE_SATS = 1_000_000
    before = rows()
    # 1000.01 USD at 100000 USD/BTC is 1,000,010 sats.
    big = shop.invoice.post(INVOICES, {"amount": "1000.01", "currency": "USD"})
    assert_problem(big, 400, "amount_too_large")
    product = make_product(shop, price="9999999999999.99")
    many = shop.invoice.post(INVOICES, {"productId": product["productId"], "quantity": 10000})
    assert_problem(many, 400, "amount_too_large")
    assert rows() == before
    assert shop.invoice.post(INVOICES, {"amount": "1000", "currency": "USD"}).status_code == 201


def test_another_merchants_invoice_is_a_404(shop, other_shop):
    mine = shop.invoice.post(INVOICES, {"amount": "100", "currency": "SAT"}).json()
    response = other_shop.admin.get(f"{INVOICES}/{mine['invoiceId']}")
    assert_problem(response, 404, "not_found")
    assert other_shop.admin.get(INVOICES).json() == {"items": [], "total": 0}
    assert_problem(shop.admin.get(f"{INVOICES}/inv_doesnotexist"), 404, "not_found")


def test_an_invoice_goes_from_unpaid_to_paid(shop):
    created = shop.invoice.post(INVOICES, {"amount": "5000", "currency": "SAT"}).json()
    url = f"{INVOICES}/{created['invoiceId']}"
    assert shop.invoice.get(url).json()["status"] == "unpaid"
    pay(created)
    paid = shop.invoice.get(url).json()
    assert paid["status"] == "paid"
    invoice = Invoice.objects.get(payment_hash=created["paymentHash"])
    assert paid["paidAt"] == invoice.paid_at.isoformat().replace("+00:00", "Z")
    assert {k: v for k, v in paid.items() if k not in ("status", "paidAt")} == {
        k: v for k, v in created.items() if k not in ("status", "paidAt")
    }


def test_expired_invoices(shop):
    lapsed = shop.invoice.post(INVOICES, {"amount": "100", "currency": "SAT"}).json()
    swept = shop.invoice.post(INVOICES, {"amount": "200", "currency": "SAT"}).json()
    fresh = shop.invoice.post(INVOICES, {"amount": "300", "currency": "SAT"}).json()
    past = timezone.now() - timedelta(seconds=1)
    # One is past its expiry before the sweep saw it; the other the sweep marked expired.
    Invoice.objects.filter(payment_hash=lapsed["paymentHash"]).update(expires_at=past)
    Invoice.objects.filter(payment_hash=swept["paymentHash"]).update(expires_at=past)
    lightning_services.expire_invoices()
    Invoice.objects.filter(payment_hash=lapsed["paymentHash"]).update(state="open")
    for created in (lapsed, swept):
        assert shop.invoice.get(f"{INVOICES}/{created['invoiceId']}").json()["status"] == "expired"
    assert shop.invoice.get(f"{INVOICES}/{fresh['invoiceId']}").json()["status"] == "unpaid"


def test_list_filters_by_status_and_paginates(shop):
    made = [
        shop.invoice.post(INVOICES, {"amount": str(100 + i), "currency": "SAT"}).json()
        for i in range(4)
    ]
    pay(made[0])
    Invoice.objects.filter(payment_hash=made[1]["paymentHash"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    def ids(**params):
        return [item["invoiceId"] for item in shop.invoice.get(INVOICES, **params).json()["items"]]

    assert ids() == [m["invoiceId"] for m in reversed(made)]  # newest first
    assert ids(status="paid") == [made[0]["invoiceId"]]
    assert ids(status="expired") == [made[1]["invoiceId"]]
    assert ids(status="unpaid") == [made[3]["invoiceId"], made[2]["invoiceId"]]
    page = shop.invoice.get(INVOICES, limit=2, offset=2).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    assert page["items"][0]["invoiceId"] == made[1]["invoiceId"]
    assert_problem(shop.invoice.get(INVOICES, status="open"), 400, "validation_error")
    assert_problem(shop.invoice.get(INVOICES, offset=-1), 400)
    assert_problem(shop.invoice.get(INVOICES, limit="ten"), 400)


# --- Idempotency ---------------------------------------------------------------------------


def test_an_idempotent_retry_returns_the_first_invoice(shop):
    body = {"amount": "10.00", "currency": "EUR", "userRef": "cart-9"}
    first = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    again = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert CheckoutInvoice.objects.count() == 1 and Invoice.objects.count() == 1
    other = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "k-2"})
    assert other.json()["invoiceId"] != first.json()["invoiceId"]


def test_a_reused_key_with_another_body_is_refused(shop):
    shop.invoice.post(
        INVOICES, {"amount": "5", "currency": "USD"}, headers={"Idempotency-Key": "k"}
    )
    before = rows()
    response = shop.invoice.post(
        INVOICES, {"amount": "6", "currency": "USD"}, headers={"Idempotency-Key": "k"}
    )
    assert_problem(response, 422, "idempotency_key_reused")
    assert rows() == before


def test_keys_are_per_merchant(shop, other_shop):
    body = {"amount": "5", "currency": "USD"}
    mine = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "same"}).json()
    theirs = other_shop.admin.post(INVOICES, body, headers={"Idempotency-Key": "same"})
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs
    assert theirs.json()["invoiceId"] != mine["invoiceId"]


def test_a_failed_first_request_does_not_burn_the_key(shop, settings):
    settings.FIXED_RATES = "EUR=92000"  # no USD rate: the create fails with a 503
    body = {"amount": "5", "currency": "USD"}
    failed = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "k"})
    assert_problem(failed, 503, "rate_unavailable")
    assert rows() == (0, 0, 0, 0)
    settings.FIXED_RATES = "USD=100000,EUR=92000"
    retried = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "k"})
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried


def test_a_retry_gets_the_first_invoice_even_after_the_product_was_deactivated(shop):
    product = make_product(shop)
    body = {"productId": product["productId"], "quantity": 2}
    first = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "buy-1"}).json()
    shop.admin.send("PATCH", f"{PRODUCTS}/{product['productId']}", {"active": False})
    again = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "buy-1"})
    assert again.status_code == 201 and again.json()["invoiceId"] == first["invoiceId"]
    fresh = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "buy-2"})
    assert_problem(fresh, 409, "product_inactive")
    assert IdempotencyKey.objects.filter(key="buy-2").count() == 0  # released, not burnt


def test_a_too_long_idempotency_key_is_a_400(shop):
    response = shop.invoice.post(
        INVOICES, {"amount": "5", "currency": "USD"}, headers={"Idempotency-Key": "k" * 257}
    )
    assert_problem(response, 400, "validation_error")
    assert rows() == (0, 0, 0, 0)


def test_a_key_in_use_is_a_409_at_once_and_a_dead_reservation_is_taken_over(shop):
    body = {"amount": "3.00", "currency": "USD"}
    terms = CheckoutInvoiceCreateSerializer(data=body)
    assert terms.is_valid()
    # A first request with this key reserved it, then its process died mid-request.
    reservation = IdempotencyKey.objects.create(
        merchant=shop.merchant, key="k", request_hash=request_fingerprint(terms.validated_data)
    )
    busy = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "k"})
    assert_problem(busy, 409, "idempotency_key_in_use")
    assert busy["Retry-After"] == "1"
    assert rows()[:2] == (0, 0)
    # A minute on, the reservation is stale: the retry takes it over and makes the invoice.
    IdempotencyKey.objects.filter(pk=reservation.pk).update(
        created_at=timezone.now() - timedelta(seconds=61)
    )
    made = shop.invoice.post(INVOICES, body, headers={"Idempotency-Key": "k"})
    assert made.status_code == 201 and "Idempotent-Replayed" not in made
    reservation.refresh_from_db()
    assert reservation.checkout_invoice.public_id == made.json()["invoiceId"]
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_creates_with_one_key_make_one_invoice():
    merchant, key = create_merchant("Busy shop")
    body = {"amount": "21.00", "currency": "USD", "metadata": {"attempt": "same"}}
    barrier = threading.Barrier(10)
    answers = []

    def create():
        try:
            barrier.wait()
            response = Api(key).post(INVOICES, body, headers={"Idempotency-Key": "order-1"})
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # One request makes the invoice; the others get it back (if it was done) or are told
    # at once that it is in progress, never kept waiting.
    made = [body for status, body in answers if status == 201]
    busy = [body for status, body in answers if status == 409]
    assert len(made) + len(busy) == 10, answers
    assert made and all(b["error"] == "idempotency_key_in_use" for b in busy)
    assert len({body["invoiceId"] for body in made}) == 1
    assert len({body["lightningInvoice"] for body in made}) == 1
    retried = Api(key).post(INVOICES, body, headers={"Idempotency-Key": "order-1"})
    assert retried.status_code == 201 and retried["Idempotent-Replayed"] == "true"
    assert retried.json()["invoiceId"] == made[0]["invoiceId"]
    assert CheckoutInvoice.objects.count() == 1
    assert Invoice.objects.count() == 1 and DevNodeInvoice.objects.count() == 1
    assert IdempotencyKey.objects.get().checkout_invoice == CheckoutInvoice.objects.get()


# --- The keyless product checkout ----------------------------------------------------------


def test_a_storefront_starts_a_checkout_without_a_key(shop):
    product = make_product(shop, price="2.50", currency="USD")
    url = f"{PRODUCTS}/{product['productId']}/checkout"
    bare = Api().post(url)
    assert bare.status_code == 201, bare.content
    assert bare.json()["satsAmount"] == 2500 and bare.json()["quantity"] == 1
    detailed = Api().post(url, {"quantity": 2, "email": "buyer@example.com", "sendEmail": True})
    assert detailed.status_code == 201, detailed.content
    body = detailed.json()
    assert body["amount"] == "5.00" and body["satsAmount"] == 5000
    assert body["email"] == "buyer@example.com" and body["userRef"] is None
    assert set(body) == set(bare.json())  # the same answer as the merchant's create
    assert CheckoutInvoice.objects.filter(merchant=shop.merchant).count() == 2


@pytest.mark.parametrize(
    "body, field",
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": "1"}, "quantity"),
        ({"redirectUrl": "https://evil.example"}, "redirectUrl"),  # not the buyer's to set
        ({"amount": "0.01"}, "amount"),
        ({"sendEmail": True}, "email"),
    ],
)
def test_bad_storefront_checkout_input_is_a_400(shop, body, field):
    product = make_product(shop)
    response = Api().post(f"{PRODUCTS}/{product['productId']}/checkout", body)
    assert field in assert_problem(response, 400, "validation_error")["errors"]
    assert rows() == (0, 0, 0, 0)


MERCHANT_FIELDS = {
    "userRef": "order-1000",
    "metadata": {"orderId": 1000},
    "webhookUrl": "https://evil.example/hook",
    "redirectUrl": "https://evil.example",
    "description": "Paid in full",
    "expiresInSeconds": 86400,
    "productId": "prod_other",
    "amount": "1000.00",
    "currency": "SAT",
}


@pytest.mark.parametrize("field", sorted(MERCHANT_FIELDS))
def test_a_buyer_cannot_set_what_the_merchant_trusts(shop, field):
    product = make_product(shop, price="1.00", currency="USD")
    response = Api().post(
        f"{PRODUCTS}/{product['productId']}/checkout",
        {"quantity": 1, field: MERCHANT_FIELDS[field]},
    )
    problem = assert_problem(response, 400, "validation_error")
    assert list(problem["errors"]) == [field]
    assert problem["detail"].startswith(f"{field}: Only the merchant sets this")
    assert rows() == (0, 0, 0, 0)


def test_every_forbidden_field_is_named(shop):
    product = make_product(shop, price="1.00", currency="USD")
    response = Api().post(
        f"{PRODUCTS}/{product['productId']}/checkout",
        {"userRef": "order-1000", "metadata": {}, "colour": "red"},
    )
    errors = assert_problem(response, 400, "validation_error")["errors"]
    assert errors["colour"] == ["Unknown field."]
    assert set(errors) == {"userRef", "metadata", "colour"}


def test_a_buyer_cannot_pay_one_dollar_under_the_reference_of_a_large_order(shop):
    """The merchant's $1,000 order is invoice + userRef "order-1000"; a buyer may start a $1
    checkout of a product, but not under that reference."""
    order = shop.invoice.post(
        INVOICES, {"amount": "1000.00", "currency": "USD", "userRef": "order-1000"}
    )
    assert order.status_code == 201, order.content
    product = make_product(shop, price="1.00", currency="USD")
    url = f"{PRODUCTS}/{product['productId']}/checkout"

    assert_problem(Api().post(url, {"userRef": "order-1000"}), 400, "validation_error")
    cheap = Api().post(url)
    assert cheap.status_code == 201 and cheap.json()["userRef"] is None
    assert list(
        CheckoutInvoice.objects.filter(user_ref="order-1000").values_list("public_id", flat=True)
    ) == [order.json()["invoiceId"]]


def test_an_unknown_product_checkout_is_a_404(db):
    assert_problem(Api().post(f"{PRODUCTS}/prod_nope/checkout"), 404, "not_found")


def test_storefront_checkouts_are_rate_limited_per_address(shop, settings):
    settings.CHECKOUT_PUBLIC_RATE_PER_MINUTE = 3
    product = make_product(shop, price="100", currency="SAT")
    url = f"{PRODUCTS}/{product['productId']}/checkout"
    here, there = Client(REMOTE_ADDR="203.0.113.5"), Client(REMOTE_ADDR="198.51.100.7")
    statuses = [here.post(url, content_type="application/json").status_code for _ in range(3)]
    assert statuses == [201, 201, 201]
    limited = here.post(url, content_type="application/json")
    assert_problem(limited, 429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert CheckoutInvoice.objects.count() == 3
    assert there.post(url, content_type="application/json").status_code == 201


def test_the_rate_limit_can_key_on_a_trusted_proxy_header(shop, settings):
    settings.CHECKOUT_PUBLIC_RATE_PER_MINUTE = 1
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    product = make_product(shop, price="100", currency="SAT")
    url = f"{PRODUCTS}/{product['productId']}/checkout"
    proxy = Client(REMOTE_ADDR="10.0.0.1")

    def buy(ip):
        return proxy.post(url, content_type="application/json", headers={"X-Real-IP": ip})

    assert buy("203.0.113.5").status_code == 201
    assert buy("198.51.100.7").status_code == 201  # another buyer behind the same proxy
    assert buy("203.0.113.5").status_code == 429


# --- The OpenAPI document ------------------------------------------------------------------


def test_the_openapi_document_describes_the_checkout_api_without_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    from checkout import urls

    api = [p for p in urls.urlpatterns if str(p.pattern).startswith("api/")]
    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=api).get_schema(request=None, public=True)
    validate_schema(schema)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, dict(
        GENERATOR_STATS._warn_cache
    )
    paths = schema["paths"]
    create = paths["/api/checkout/invoices"]["post"]
    assert set(create["responses"]) >= {"201", "400", "401", "409", "422", "503"}
    assert "application/problem+json" in create["responses"]["400"]["content"]
    assert create["security"] == [{"ApiKey": []}]
    # One of three shapes: a product, an amount of sats, an amount in a fiat currency.
    components = schema["components"]["schemas"]
    shapes = components["CheckoutInvoiceCreateRequest"]["oneOf"]
    request = set()
    for shape in shapes:
        request |= set(components[shape["$ref"].rsplit("/", 1)[1]]["properties"])
    assert len(shapes) == 3
    assert {"productId", "amount", "userRef", "metadata", "expiresInSeconds"} <= request
    assert set(paths["/api/checkout/products/{productId}"]) == {"get", "put", "patch", "delete"}
    public = paths["/api/checkout/products/{productId}/checkout"]["post"]
    assert "429" in public["responses"] and public.get("security") in (None, [], [{}])


def test_openapi_json_serves_the_checkout_paths(client):
    # (/openapi.json answers YAML unless asked for JSON: config.urls should serve
    # SpectacularJSONAPIView there; reported to the lead.)
    paths = client.get("/openapi.json", {"format": "json"}).json()["paths"]
    for path in (
        "/api/checkout/products",
        "/api/checkout/products/{productId}",
        "/api/checkout/products/{productId}/checkout",
        "/api/checkout/invoices",
        "/api/checkout/invoices/{invoiceId}",
    ):
        assert path in paths
