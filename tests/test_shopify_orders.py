"""Cart checkout paid by L402 through the dev node, claims, orders pushed to a fake Shopify,
fulfilment webhooks, order status, stats, and every bad input of the seed's rules."""

import base64
import hashlib
import hmac
import json
import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from checkout.models import ApiKey
from checkout.services import create_merchant, issue_api_key
from lightning import services as lightning_services
from lightning.backends import get_backend
from lightning.models import Invoice
from shopify_bridge import push, services
from shopify_bridge.catalog import sync_catalog
from shopify_bridge.models import ShopifyOrder, ShopifyOrderPush, ShopifyStore
from tests import test_shopify_support as support
from tests.test_shopify_support import SHOP, WEBHOOK_SECRET, standard_catalog
from webhooks.models import WebhookEndpoint, WebhookEvent

fake_shopify = support.fake_shopify
local_cache = support.local_cache
merchant_and_key = support.merchant_and_key
store = support.store

pytestmark = pytest.mark.django_db

ADDRESS = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "address1": "1 Main St",
    "address2": "",
    "city": "Springfield",
    "province": "IL",
    "zip": "62701",
    "country": "US",
}


@pytest.fixture
def shop(store, fake_shopify, local_cache):
    """A synced store, a webhook endpoint listening to everything, and a client."""
    standard_catalog(fake_shopify)
    sync_catalog(store)
    WebhookEndpoint.objects.create(
        merchant=store.merchant, url="https://hooks.example/z", events=["*"], secret="whsec_x"
    )
    return store


def post_json(client, path, body, **headers):
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


def start(client, items, slug="zap-apparel"):
    return post_json(client, f"/api/shopify/{slug}/checkout", {"items": items})


def pay(body) -> str:
    """The buyer's wallet pays; the watcher's step runs in-process. Returns the preimage."""
    backend = get_backend()
    payment = backend.pay_invoice(body["invoice"])
    lightning_services.apply_settlements([backend.lookup_invoice(body["paymentHash"])])
    return payment.preimage


def redeem(client, body, preimage, items=None, slug="zap-apparel"):
    return post_json(
        client,
        f"/api/shopify/{slug}/checkout",
        {"items": items or []},
        HTTP_AUTHORIZATION=f"L402 {body['macaroon']}:{preimage}",
    )


def paid_order(client, items=None):
    """Checkout, pay, redeem: returns (402 body, 200 body)."""
    challenge = start(client, items or [{"variantId": 1001, "quantity": 2}]).json()
    preimage = pay(challenge)
    return challenge, redeem(client, challenge, preimage).json()


def claim(client, token, slug="zap-apparel", **changes):
    body = {"claimToken": token, "email": "ada@example.com", "shippingAddress": dict(ADDRESS)}
    body.update(changes)
    return post_json(client, f"/api/shopify/{slug}/claim", body)


def shopify_webhook(client, topic, payload, secret=WEBHOOK_SECRET, slug="zap-apparel"):
    raw = json.dumps(payload).encode()
    signature = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest())
    return client.post(
        f"/api/shopify/{slug}/webhooks",
        raw,
        content_type="application/json",
        HTTP_X_SHOPIFY_TOPIC=topic,
        HTTP_X_SHOPIFY_HMAC_SHA256=signature.decode(),
        HTTP_X_SHOPIFY_SHOP_DOMAIN=SHOP,
    )


def events_of(order_id):
    return [e.type for e in WebhookEvent.objects.order_by("id") if order_id in e.body]


def status_of(client, order_id, token, slug="zap-apparel"):
    return client.get(f"/api/shopify/{slug}/orders/{order_id}", {"claimToken": token})


# --- the whole path ---------------------------------------------------------------------


def test_catalog_to_shipped(shop, fake_shopify):
    client = Client()
    catalog = client.get("/api/shopify/zap-apparel/catalog").json()
    variant = catalog["products"][0]["variants"][1]["variantId"]

    response = start(client, [{"variantId": variant, "quantity": 2}, {"variantId": 2001}])
    assert response.status_code == 402
    assert response["Content-Type"] == "application/problem+json"
    challenge = response.json()
    order_id = challenge["orderId"]
    assert order_id.startswith("shpfy_")
    # 2 x 20.00 + 2.50 = 42.50, under the 50.00 free-shipping threshold: + 5.00 shipping.
    assert challenge["totalUsd"] == "47.50"
    assert (challenge["subtotalUsd"], challenge["shippingUsd"]) == ("42.50", "5.00")
    assert challenge["amountSats"] == 47_500  # at the fixed test rate of 100,000 USD/BTC
    invoice = Invoice.objects.get(payment_hash=challenge["paymentHash"])
    assert invoice.bolt11 == challenge["invoice"] and invoice.amount_msat == 47_500_000
    www = response["WWW-Authenticate"]
    assert www.startswith(f'L402 macaroon="{challenge["macaroon"]}", invoice="{invoice.bolt11}"')
    assert f'LSAT macaroon="{challenge["macaroon"]}"' in www
    assert challenge["checkoutUrl"].startswith(
        f"http://127.0.0.1:8000/shopify/zap-apparel/pay/{order_id}?k="
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", challenge["expiresAt"])

    preimage = pay(challenge)
    order = ShopifyOrder.objects.get(public_id=order_id)
    assert order.status == "AwaitingDetails" and order.paid_sats == 47_500

    paid = redeem(client, challenge, preimage)
    assert paid.status_code == 200
    body = paid.json()
    assert body["orderId"] == order_id and body["status"] == "AwaitingDetails"
    token = body["claimToken"]
    assert re.fullmatch(r"[0-9A-Za-z]{20}", token)
    assert body["claimPageUrl"] == "http://127.0.0.1:8000/shopify/zap-apparel/claim"
    assert token not in json.dumps(list(ShopifyOrder.objects.values()), default=str)
    # A retry of the paid request gives the same token (it is not stored, but derived).
    assert redeem(client, challenge, preimage).json()["claimToken"] == token

    claimed = claim(client, token)
    assert claimed.status_code == 200
    assert claimed.json() == {
        "orderId": order_id,
        "status": "Processing",
        "shopifyOrderNumber": None,
        "claimPageUrl": "http://127.0.0.1:8000/shopify/zap-apparel/claim",
        "message": "Thank you! Your order is being placed with the store.",
    }
    assert status_of(client, order_id, token).json()["status"] == "Processing"

    assert push.push_order(order.pk) is True
    assert len(fake_shopify.orders) == 1
    created = fake_shopify.orders[0]["input"]
    assert created["financialStatus"] == "PAID"
    assert created["email"] == "ada@example.com"
    assert f"zapgate-{order_id}" in created["tags"]
    assert challenge["paymentHash"] in created["note"] and "47500 sats" in created["note"]
    assert created["transactions"][0]["amountSet"]["shopMoney"] == {
        "amount": "47.50",
        "currencyCode": "USD",
    }
    assert sorted((li["variantId"], li["quantity"]) for li in created["lineItems"]) == [
        (f"gid://shopify/ProductVariant/{variant}", 2),
        ("gid://shopify/ProductVariant/2001", 1),
    ]
    assert created["shippingLines"][0]["priceSet"]["shopMoney"]["amount"] == "5.00"
    assert created["shippingAddress"]["countryCode"] == "US"

    status = status_of(client, order_id, token).json()
    assert status["status"] == "Placed" and status["shopifyOrderNumber"] == "#1001"

    shopify_id = int(fake_shopify.orders[0]["id"].rsplit("/", 1)[1])
    fulfilled = shopify_webhook(
        client,
        "orders/fulfilled",
        {
            "id": shopify_id,
            "name": "#1001",
            "fulfillments": [
                {
                    "status": "success",
                    "tracking_company": "UPS",
                    "tracking_number": "1Z999",
                    "tracking_url": "https://ups.example/1Z999",
                }
            ],
        },
    )
    assert fulfilled.status_code == 200 and fulfilled.json()["shipped"] is True
    status = status_of(client, order_id, token).json()
    assert status == {
        "orderId": order_id,
        "status": "Shipped",
        "totalUsd": "47.50",
        "paidSats": 47_500,
        "shopifyOrderNumber": "#1001",
        "trackingNumber": "1Z999",
        "trackingCarrier": "UPS",
        "trackingUrl": "https://ups.example/1Z999",
        "createdAt": status["createdAt"],
        "paidAt": status["paidAt"],
        "shippedAt": status["shippedAt"],
    }
    assert status["paidAt"] and status["shippedAt"]
    assert events_of(order_id) == [
        "order.paid",
        "order.claimed",
        "order.placed",
        "order.shipped",
    ]


def test_an_order_row_holds_no_working_token(shop):
    """The paid invoice's preimage is in the database; the order's L402 token must not be:
    only its id and caveats are kept, and the server secret signs them again."""
    client = Client()
    challenge = start(client, [{"variantId": 2001}]).json()
    preimage = pay(challenge)
    row = ShopifyOrder.objects.filter(public_id=challenge["orderId"]).values().get()
    stored = json.dumps(row, default=str)
    assert challenge["macaroon"] not in stored
    signature = base64.b64decode(challenge["macaroon"])[-32:]
    assert signature.hex() not in stored and base64.b64encode(signature).decode() not in stored
    order = ShopifyOrder.objects.select_related("invoice").get(public_id=challenge["orderId"])
    assert services.challenge(order)[0]["macaroon"] == challenge["macaroon"]
    assert redeem(client, challenge, preimage).status_code == 200


def test_the_hosted_page_shows_the_claim_link_once_paid(shop, fake_shopify):
    client = Client()
    challenge = start(client, [{"variantId": 3001, "quantity": 3}]).json()
    url = challenge["checkoutUrl"].removeprefix("http://127.0.0.1:8000")
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Waiting for payment" in html and challenge["invoice"] in html
    assert 'http-equiv="refresh"' in html and "<svg" in html
    assert "$41.00" in html  # 3 x 12.00 + 5.00 shipping
    assert client.get(url.split("?")[0]).status_code == 404
    assert client.get(url[:-3] + "abc").status_code == 404

    get_backend().pay_invoice(challenge["invoice"])  # a wallet that keeps the preimage
    lightning_services.apply_settlements([get_backend().lookup_invoice(challenge["paymentHash"])])
    html = client.get(url).content.decode()
    assert "Paid" in html and 'http-equiv="refresh"' not in html
    token = re.search(r'id="claim-token">(\w+)<', html).group(1)
    link = re.search(r'id="claim-link" href="([^"]+)"', html).group(1)
    assert link == f"/shopify/zap-apparel/claim?token={token}"

    form = client.get(link)
    assert form.status_code == 200 and f'value="{token}"' in form.content.decode()
    fields = {"claimToken": token, "email": "ada@example.com", **ADDRESS}
    fields["country"] = "Canada"
    bad = client.post("/shopify/zap-apparel/claim", fields)
    assert bad.status_code == 400 and "country" in bad.content.decode()
    fields["country"] = "us"
    done = client.post("/shopify/zap-apparel/claim", fields)
    assert done.status_code == 200
    assert "being placed" in done.content.decode()
    assert ShopifyOrder.objects.get(public_id=challenge["orderId"]).status == "Processing"
    again = client.post("/shopify/zap-apparel/claim", fields)
    assert again.status_code == 404 and "already been used" in again.content.decode()


# --- checkout rules --------------------------------------------------------------------


def test_free_shipping_above_the_threshold(shop):
    body = start(Client(), [{"variantId": 1001, "quantity": 3}]).json()
    assert (body["subtotalUsd"], body["shippingUsd"], body["totalUsd"]) == (
        "60.00",
        "0.00",
        "60.00",
    )


ELEVEN_ITEMS = [{"variantId": 1001, "quantity": 1} for _ in range(11)]


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({}, 400, "items"),
        ({"items": []}, 400, "items"),
        ({"items": "1001"}, 400, "items"),
        ({"items": ELEVEN_ITEMS}, 400, "items"),
        ({"items": [{"variantId": 1001, "quantity": 0}]}, 400, "items.0.quantity"),
        ({"items": [{"variantId": 1001, "quantity": 11}]}, 400, "items.0.quantity"),
        ({"items": [{"variantId": 1001, "quantity": -1}]}, 400, "items.0.quantity"),
        ({"items": [{"variantId": 1001, "quantity": 1.5}]}, 400, "items.0.quantity"),
        ({"items": [{"quantity": 1}]}, 400, "items.0.variantId"),
        ({"items": [{"variantId": "abc"}]}, 400, "items.0.variantId"),
        ({"items": [{"variantId": 0}]}, 400, "items.0.variantId"),
        ({"items": [{"variantId": 2**63}]}, 400, "items.0.variantId"),
        (
            {"items": [{"variantId": 1001, "quantity": 6}, {"variantId": 1002, "quantity": 5}]},
            400,
            "items",
        ),
        ({"items": [{"variantId": 9999}]}, 404, "items.0.variantId"),  # not in the catalog
        ({"items": [{"variantId": 1002}, {"variantId": 1003}]}, 409, "items.1.variantId"),
    ],
)
def test_bad_carts_are_refused_before_any_invoice(shop, body, status, field):
    response = post_json(Client(), "/api/shopify/zap-apparel/checkout", body)
    assert response.status_code == status, response.content
    problem = response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert any(name.startswith(field) for name in problem["errors"]), problem
    assert not Invoice.objects.exists() and not ShopifyOrder.objects.exists()


def test_unknown_store_and_malformed_json(shop):
    assert start(Client(), [{"variantId": 1001}], slug="nope").status_code == 404
    response = Client().post(
        "/api/shopify/zap-apparel/checkout", "{not json", content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["error"] == "malformed_json"


def test_checkouts_are_rate_limited(shop, settings):
    settings.SHOPIFY_CHECKOUT_RATE_PER_MINUTE = 2
    client = Client()
    assert [start(client, [{"variantId": 1001}]).status_code for _ in range(3)] == [
        402,
        402,
        429,
    ]


# --- credentials -------------------------------------------------------------------------


def test_bad_credentials_are_401(shop, merchant_and_key):
    client = Client()
    challenge = start(client, [{"variantId": 1001}]).json()
    preimage = pay(challenge)

    wrong = redeem(client, challenge, "00" * 32)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_preimage"
    raw = bytearray(base64.b64decode(challenge["macaroon"]))
    raw[-5] ^= 1
    tampered = dict(challenge, macaroon=base64.b64encode(bytes(raw)).decode())
    assert redeem(client, tampered, preimage).status_code == 401
    assert redeem(client, challenge, "xyz").json()["error"] == "malformed_preimage"
    missing = post_json(
        client,
        "/api/shopify/zap-apparel/checkout",
        {},
        HTTP_AUTHORIZATION=f"L402 {challenge['macaroon']}",
    )
    assert missing.status_code == 401

    # A token of another store's order is not accepted here.
    other_merchant, _ = create_merchant("Other")
    ShopifyStore.objects.create(
        merchant=other_merchant,
        slug="other",
        name="Other",
        shop_domain="other.myshopify.com",
        access_token="x",
    )
    foreign = redeem(client, challenge, preimage, slug="other")
    assert foreign.status_code == 401 and foreign.json()["error"] == "token_out_of_scope"
    assert redeem(client, challenge, preimage).status_code == 200


def test_a_paid_invoice_the_watcher_has_not_seen_yet_is_accepted(shop):
    client = Client()
    challenge = start(client, [{"variantId": 1001}]).json()
    preimage = get_backend().pay_invoice(challenge["invoice"]).preimage  # no watcher step
    response = redeem(client, challenge, preimage)
    assert response.status_code == 200 and response.json()["status"] == "AwaitingDetails"


# --- claims ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"claimToken": ""}, "claimToken"),
        ({"claimToken": "a" * 21}, "claimToken"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a" * 195 + "@x.com"}, "email"),
        ({"email": None}, "email"),
        ({"shippingAddress": None}, "shippingAddress"),
        ({"shippingAddress": {**ADDRESS, "firstName": ""}}, "shippingAddress.firstName"),
        ({"shippingAddress": {**ADDRESS, "address1": "x" * 256}}, "shippingAddress.address1"),
        (
            {"shippingAddress": {k: v for k, v in ADDRESS.items() if k != "city"}},
            "shippingAddress.city",
        ),
        ({"shippingAddress": {**ADDRESS, "zip": ""}}, "shippingAddress.zip"),
        ({"shippingAddress": {**ADDRESS, "country": "USA"}}, "shippingAddress.country"),
        ({"shippingAddress": {**ADDRESS, "country": "DE"}}, "shippingAddress.country"),
    ],
)
def test_bad_claims_are_400_and_spend_nothing(shop, changes, field):
    client = Client()
    _, paid = paid_order(client)
    response = claim(client, paid["claimToken"], **changes)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert claim(client, paid["claimToken"]).status_code == 200


def test_wrong_and_spent_tokens_answer_alike(shop):
    client = Client()
    _, paid = paid_order(client)
    assert claim(client, paid["claimToken"]).status_code == 200
    spent = claim(client, paid["claimToken"])
    never = claim(client, "A" * 20)
    short = claim(client, "x")
    assert spent.status_code == never.status_code == short.status_code == 404
    assert spent.json() == never.json() == short.json()
    assert spent.json()["error"] == "invalid_claim_token"
    assert ShopifyOrderPush.objects.count() == 1


def test_a_token_of_an_unpaid_order_claims_nothing(shop):
    from shopify_bridge.services import claim_token

    client = Client()
    challenge = start(client, [{"variantId": 1001}]).json()
    response = claim(client, claim_token(challenge["orderId"]))
    assert response.status_code == 404 and response.json()["error"] == "invalid_claim_token"


def test_claims_are_rate_limited(shop, settings):
    settings.SHOPIFY_CLAIM_RATE_PER_MINUTE = 3
    client = Client()
    codes = [claim(client, f"guess{n}").status_code for n in range(4)]
    assert codes == [404, 404, 404, 429]
    assert int(claim(client, "guess")["Retry-After"]) >= 1


# --- pushing to Shopify -------------------------------------------------------------------


def make_due(order):
    ShopifyOrderPush.objects.filter(order=order).update(next_attempt_at=timezone.now())


def test_shopify_down_at_claim_time_then_up_gives_one_order(shop, fake_shopify):
    client = Client()
    challenge, paid = paid_order(client)
    fake_shopify.down = True
    assert claim(client, paid["claimToken"]).status_code == 200
    order = ShopifyOrder.objects.get(public_id=challenge["orderId"])
    assert push.push_order(order.pk) is False
    assert push.push_due_orders() == 0  # not due yet: it backs off
    row = ShopifyOrderPush.objects.get(order=order)
    assert row.attempts == 1 and "could not be reached" in row.last_error
    assert status_of(client, order.public_id, paid["claimToken"]).json()["status"] == "Processing"

    fake_shopify.down = False
    fake_shopify.fail_status = 503
    make_due(order)
    assert push.push_due_orders() == 0
    fake_shopify.fail_status = None
    fake_shopify.throttle_429 = 1
    fake_shopify.retry_after = "0"
    make_due(order)
    assert push.push_due_orders() == 1
    assert push.push_due_orders() == 0
    make_due(order)
    assert push.push_order(order.pk) is False  # done: nothing more to send
    order.refresh_from_db()
    assert order.status == "Placed" and len(fake_shopify.orders) == 1
    assert events_of(order.public_id).count("order.placed") == 1


def test_a_lost_answer_is_found_again_not_created_twice(shop, fake_shopify):
    client = Client()
    challenge, paid = paid_order(client)
    claim(client, paid["claimToken"])
    order = ShopifyOrder.objects.get(public_id=challenge["orderId"])
    fake_shopify.lose_create_answers = 1  # Shopify makes the order, the answer is lost
    assert push.push_order(order.pk) is False
    assert len(fake_shopify.orders) == 1
    make_due(order)
    assert push.push_order(order.pk) is True
    order.refresh_from_db()
    assert order.status == "Placed" and order.shopify_order_number == "#1001"
    assert len(fake_shopify.orders) == 1
    assert fake_shopify.operations().count("CreateZapgateOrder") == 1


def test_a_second_worker_cannot_send_a_leased_order(shop, fake_shopify):
    client = Client()
    challenge, paid = paid_order(client)
    claim(client, paid["claimToken"])
    order = ShopifyOrder.objects.get(public_id=challenge["orderId"])
    row = ShopifyOrderPush.objects.get(order=order)
    assert push._lease(row.pk) is not None  # the first worker holds it
    assert push.push_order(order.pk) is False and push.push_due_orders() == 0
    assert fake_shopify.orders == []


def test_out_of_stock_needs_refund_and_the_merchant_is_told(shop, fake_shopify):
    client = Client()
    challenge, paid = paid_order(client, [{"variantId": 2001, "quantity": 4}])  # 3 in stock
    claim(client, paid["claimToken"])
    order = ShopifyOrder.objects.get(public_id=challenge["orderId"])
    assert push.push_order(order.pk) is True
    order.refresh_from_db()
    assert order.status == "NeedsRefund" and "out of stock" in order.refund_reason
    assert fake_shopify.orders == []
    assert "order.needs_refund" in events_of(order.public_id)
    assert push.send_refund_notices() == 1
    assert push.send_refund_notices() == 0  # once
    assert mail.outbox[0].to == ["owner@zap.example"]
    assert order.public_id in mail.outbox[0].subject and "ada@example.com" in mail.outbox[0].body
    status = status_of(client, order.public_id, paid["claimToken"]).json()
    assert status["status"] == "NeedsRefund"


def test_an_order_that_needs_a_refund_is_refunded_in_full_through_a_link(
    shop, fake_shopify, merchant_and_key
):
    from refunds import emails
    from refunds.models import Refund

    client = Client()
    challenge, paid = paid_order(client, [{"variantId": 2001, "quantity": 4}])  # 3 in stock
    claim(client, paid["claimToken"])
    order = ShopifyOrder.objects.get(public_id=challenge["orderId"])
    push.push_order(order.pk)
    _, key = merchant_and_key

    # The order's money is all the merchant's wallet holds: it is refunded in full anyway.
    answer = post_json(
        client, "/api/refunds", {"shopifyOrderId": order.public_id}, HTTP_X_API_KEY=key
    )

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["source"] == "shopify" and body["sourceId"] == order.public_id
    assert body["amountSats"] == order.amount_sats and body["state"] == "claimable"
    assert body["email"] == "ada@example.com"
    refund = Refund.objects.get(public_id=body["refundId"])
    assert emails.send(refund.pk) == 1
    assert body["claimUrl"] in mail.outbox[-1].body and mail.outbox[-1].to == ["ada@example.com"]
    # A wallet elsewhere claims it; the dev node routes without fees.
    invoice = get_backend().create_invoice(order.amount_sats * 1000, "ada's wallet", 600)
    withdraw = client.get(urlsplit(body["claimUrl"]).path.replace("/refund/", "/lnurlw/"))
    callback = urlsplit(withdraw.json()["callback"]).path
    claimed = client.get(callback, {"k1": withdraw.json()["k1"], "pr": invoice.bolt11})
    assert claimed.json() == {"status": "OK"}
    from refunds import services as refunds

    assert refunds.pay_out(refund.pk).state == "completed"
    again = post_json(
        client, "/api/refunds", {"shopifyOrderId": order.public_id}, HTTP_X_API_KEY=key
    )
    assert again.status_code == 409 and again.json()["error"] == "fully_refunded"
    other = post_json(client, "/api/refunds", {"shopifyOrderId": "shpfy_nope"}, HTTP_X_API_KEY=key)
    assert other.status_code == 404


# --- Shopify's webhooks -----------------------------------------------------------------


def placed_order(client, fake_shopify):
    challenge, paid = paid_order(client)
    claim(client, paid["claimToken"])
    order = ShopifyOrder.objects.get(public_id=challenge["orderId"])
    push.push_order(order.pk)
    order.refresh_from_db()
    return order, paid["claimToken"]


def test_shopify_webhooks_need_a_valid_hmac(shop, fake_shopify):
    client = Client()
    order, _ = placed_order(client, fake_shopify)
    payload = {"id": order.shopify_order_id, "fulfillments": [{"tracking_number": "1"}]}
    assert shopify_webhook(client, "orders/fulfilled", payload, secret="wrong").status_code == 401
    unsigned = client.post(
        "/api/shopify/zap-apparel/webhooks",
        json.dumps(payload),
        content_type="application/json",
        HTTP_X_SHOPIFY_TOPIC="orders/fulfilled",
    )
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "invalid_signature"
    ShopifyStore.objects.filter(pk=shop.pk).update(webhook_secret="")
    assert shopify_webhook(client, "orders/fulfilled", payload, secret="").status_code == 401
    order.refresh_from_db()
    assert order.status == "Placed"


def test_fulfilment_updates_ship_once_and_keep_tracking_current(shop, fake_shopify):
    client = Client()
    order, token = placed_order(client, fake_shopify)
    other = shopify_webhook(client, "orders/create", {"id": order.shopify_order_id})
    assert other.status_code == 200 and other.json()["shipped"] is False
    unknown = shopify_webhook(client, "fulfillments/create", {"order_id": 42, "status": "success"})
    assert unknown.status_code == 200 and unknown.json()["shipped"] is False
    first = {
        "order_id": order.shopify_order_id,
        "status": "success",
        "tracking_company": "USPS",
        "tracking_numbers": ["9400"],
        "tracking_urls": ["https://usps.example/9400"],
    }
    assert shopify_webhook(client, "fulfillments/create", first).json()["shipped"] is True
    second = {**first, "tracking_company": "UPS", "tracking_number": "1Z1", "tracking_url": ""}
    assert shopify_webhook(client, "fulfillments/update", second).json()["shipped"] is False
    status = status_of(client, order.public_id, token).json()
    assert status["status"] == "Shipped"
    assert (status["trackingCarrier"], status["trackingNumber"]) == ("UPS", "1Z1")
    assert status["trackingUrl"] == "https://usps.example/9400"
    assert events_of(order.public_id).count("order.shipped") == 1


def test_a_cancelled_fulfilment_does_not_ship(shop, fake_shopify):
    client = Client()
    order, _ = placed_order(client, fake_shopify)
    cancelled = {"order_id": order.shopify_order_id, "status": "cancelled"}
    assert shopify_webhook(client, "fulfillments/update", cancelled).json()["shipped"] is False
    bad = client.post(
        "/api/shopify/zap-apparel/webhooks",
        b"not json",
        content_type="application/json",
        HTTP_X_SHOPIFY_TOPIC="orders/fulfilled",
        HTTP_X_SHOPIFY_HMAC_SHA256=base64.b64encode(
            hmac.new(WEBHOOK_SECRET.encode(), b"not json", hashlib.sha256).digest()
        ).decode(),
    )
    assert bad.status_code == 400


# --- status, expiry, stores, stats --------------------------------------------------------


def test_order_status_for_buyer_and_merchant_only(shop, merchant_and_key):
    client = Client()
    challenge, paid = paid_order(client)
    order_id = challenge["orderId"]
    assert status_of(client, order_id, "wrong").status_code == 404
    assert status_of(client, order_id, "").status_code == 404
    _, key = merchant_and_key
    mine = client.get(f"/api/shopify/zap-apparel/orders/{order_id}", HTTP_X_API_KEY=key)
    assert mine.status_code == 200 and mine.json()["status"] == "AwaitingDetails"
    _, other_key = create_merchant("Other")
    theirs = client.get(f"/api/shopify/zap-apparel/orders/{order_id}", HTTP_X_API_KEY=other_key)
    assert theirs.status_code == 404


def test_unpaid_orders_expire_and_show_no_invoice(shop):
    client = Client()
    challenge = start(client, [{"variantId": 1001}]).json()
    Invoice.objects.filter(payment_hash=challenge["paymentHash"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    page_url = challenge["checkoutUrl"].removeprefix("http://127.0.0.1:8000")
    assert challenge["invoice"] not in client.get(page_url).content.decode()
    lightning_services.expire_invoices()
    order = ShopifyOrder.objects.get(public_id=challenge["orderId"])
    assert order.status == "Expired"
    html = client.get(page_url).content.decode()
    assert "Expired" in html and challenge["invoice"] not in html
    assert Invoice.objects.count() == 1  # no new invoice for an expired order


def test_store_api(merchant_and_key, local_cache):
    merchant, key = merchant_and_key
    client = Client()
    body = {
        "slug": "my-shop",
        "storeName": "My Shop",
        "shopDomain": "my-shop.myshopify.com",
        "accessToken": "shpat_abcdefghijklmnop1234",
        "webhookSecret": "s3cret-webhooks",
        "shipping": {
            "domesticUsd": "4.99",
            "freeShippingEnabled": True,
            "freeShippingThresholdUsd": "75.00",
        },
    }
    created = post_json(client, "/api/shopify/stores", body, HTTP_X_API_KEY=key)
    assert created.status_code == 201, created.content
    store_body = created.json()
    assert store_body["accessTokenHint"] == "…1234" and "accessToken" not in store_body
    assert store_body["webhookSecretSet"] is True and "webhookSecret" not in store_body
    assert "shpat_abcdefghijklmnop1234" not in created.content.decode()
    assert store_body["shipping"]["domesticUsd"] == "4.99"
    assert store_body["webhookUrl"].endswith("/api/shopify/my-shop/webhooks")

    again = post_json(client, "/api/shopify/stores", body, HTTP_X_API_KEY=key)
    assert again.status_code == 409
    bad = post_json(
        client,
        "/api/shopify/stores",
        {**body, "slug": "x2", "shopDomain": "evil.com"},
        HTTP_X_API_KEY=key,
    )
    assert bad.status_code == 400 and "shopDomain" in bad.json()["errors"]

    patched = client.patch(
        "/api/shopify/stores/my-shop",
        json.dumps({"shipping": {"domesticOnly": False}, "storeName": "Renamed"}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["shipping"]["domesticOnly"] is False
    assert patched.json()["shipping"]["domesticUsd"] == "4.99"
    assert ShopifyStore.objects.get(slug="my-shop").access_token == body["accessToken"]

    listed = client.get("/api/shopify/stores", HTTP_X_API_KEY=key).json()
    assert listed["total"] == 1 and listed["items"][0]["storeName"] == "Renamed"

    _, invoice_key = issue_api_key(merchant, ApiKey.Kind.INVOICE, "inv")
    assert client.get("/api/shopify/stores", HTTP_X_API_KEY=invoice_key).status_code == 403
    assert client.get("/api/shopify/stores").status_code == 401
    _, other_key = create_merchant("Other")
    assert client.get("/api/shopify/stores/my-shop", HTTP_X_API_KEY=other_key).status_code == 404
    assert client.delete("/api/shopify/stores/my-shop", HTTP_X_API_KEY=other_key).status_code == 404
    assert client.delete("/api/shopify/stores/my-shop", HTTP_X_API_KEY=key).status_code == 204


def test_a_store_patch_does_not_undo_what_changed_meanwhile(
    store, merchant_and_key, local_cache, monkeypatch
):
    """Between the PATCH loading the store and saving it, a catalog sync records its outcome
    and the operator pauses the store: the PATCH writes only what it was given."""
    _, key = merchant_and_key
    synced_at = timezone.now() - timedelta(minutes=1)
    load = services.store_of_merchant

    def load_while_others_write(merchant, slug):
        loaded = load(merchant, slug)
        ShopifyStore.objects.filter(pk=loaded.pk).update(
            catalog_synced_at=synced_at, last_sync_error="throttled", active=False
        )
        return loaded

    monkeypatch.setattr(services, "store_of_merchant", load_while_others_write)
    patched = Client().patch(
        f"/api/shopify/stores/{store.slug}",
        json.dumps({"storeName": "Renamed", "shipping": {"domesticUsd": "6.00"}}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert patched.status_code == 200, patched.content
    row = ShopifyStore.objects.get(pk=store.pk)
    assert (row.name, row.domestic_shipping_usd) == ("Renamed", Decimal("6.00"))
    assert (row.active, row.catalog_synced_at, row.last_sync_error) == (
        False,
        synced_at,
        "throttled",
    )
    body = patched.json()  # the answer is the store as it now is
    assert body["active"] is False and body["lastSyncError"] == "throttled"
    assert (body["storeName"], body["shipping"]["domesticUsd"]) == ("Renamed", "6.00")


def test_stats_by_state_and_store(shop, fake_shopify, merchant_and_key):
    client = Client()
    placed_order(client, fake_shopify)  # 40.00 + 5.00 shipping, Placed
    start(client, [{"variantId": 3001}])  # unpaid
    _, key = merchant_and_key
    stats = client.get("/api/stats/shopify", HTTP_X_API_KEY=key).json()
    assert stats["totals"]["orders"] == 2
    assert stats["totals"]["revenueUsd"] == "45.00" and stats["totals"]["revenueSats"] == 45_000
    assert stats["totals"]["byStatus"]["Placed"] == {
        "orders": 1,
        "totalUsd": "45.00",
        "paidSats": 45_000,
    }
    assert stats["totals"]["byStatus"]["AwaitingPayment"]["orders"] == 1
    (store_stats,) = stats["stores"]
    assert store_stats["slug"] == "zap-apparel" and store_stats["orders"] == 2
    _, other_key = create_merchant("Other")
    assert client.get("/api/stats/shopify", HTTP_X_API_KEY=other_key).json()["totals"] == {
        "orders": 0,
        "revenueUsd": "0.00",
        "revenueSats": 0,
        "byStatus": {},
    }
    assert client.get("/api/stats/shopify").status_code == 401


def test_the_openapi_document_describes_the_shopify_api(client):
    paths = json.loads(client.get("/openapi.json", {"format": "json"}).content)["paths"]
    for path in (
        "/api/shopify/{slug}/catalog",
        "/api/shopify/{slug}/checkout",
        "/api/shopify/{slug}/claim",
        "/api/shopify/{slug}/orders/{orderId}",
        "/api/shopify/{slug}/webhooks",
        "/api/shopify/stores",
        "/api/stats/shopify",
    ):
        assert path in paths, path


def test_the_admin_shows_a_merchant_only_its_own_stores_and_hides_secrets(shop, fake_shopify):
    from django.contrib.auth.models import User

    from checkout.models import MerchantUser

    client = Client()
    placed_order(client, fake_shopify)
    other, _ = create_merchant("Other")
    ShopifyStore.objects.create(
        merchant=other,
        slug="other-shop",
        name="Other",
        shop_domain="o.myshopify.com",
        access_token="shpat_other_secret_token",
    )
    staff = User.objects.create_user("clerk", password="pw", is_staff=True)
    MerchantUser.objects.create(user=staff, merchant=shop.merchant)
    client.force_login(staff)
    stores = client.get("/admin/shopify_bridge/shopifystore/")
    assert stores.status_code == 200
    html = stores.content.decode()
    assert "zap-apparel" in html and "other-shop" not in html
    assert "…cdef" in html and "shpat_test_0123456789abcdef" not in html
    other_pk = ShopifyStore.objects.get(slug="other-shop").pk
    assert client.get(f"/admin/shopify_bridge/shopifystore/{other_pk}/change/").status_code in (
        302,
        404,
    )
    orders = client.get("/admin/shopify_bridge/shopifyorder/")
    assert orders.status_code == 200 and "Placed" in orders.content.decode()

    admin = User.objects.create_superuser("root", password="pw")
    client.force_login(admin)
    page = client.get(f"/admin/shopify_bridge/shopifystore/{shop.pk}/change/")
    assert page.status_code == 200
    assert "shpat_test_0123456789abcdef" not in page.content.decode()
    assert WEBHOOK_SECRET not in page.content.decode()
