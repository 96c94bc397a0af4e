"""The Bitrefill-compatible orders API over real HTTP (a live server, the dev node): the
seed's curl examples run as written (host changed), orders paid by Lightning and from the
balance, delivery from stock, out of stock after payment refunded, signed webhooks with the
seed's body, and credentials."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from config.celery import app as celery_app
from orders.models import Order
from refunds.models import Refund
from wallets import services as wallets
from wallets.models import Wallet
from webhooks.models import WebhookEvent

from .processes import wait_for
from .test_refunds import js_lnurl_withdraw
from .test_wallets_api import Shop, assert_ledger_consistent, paid_from_outside, remote_invoice

pytestmark = pytest.mark.django_db(transaction=True)

SEED_OPERATORS = [
    {
        "slug": "lightning-recharge",
        "name": "Thor Recharge",
        "currency": "SAT",
        "range": {"min": 500, "max": 4294967, "step": 1},
        "priceRate": "1.02",
        "purchaseFee": 300,
        "delivery": "lnurl_withdraw",
        "instructions": "Withdraw your sats with any Lightning wallet.",
    },
    {
        "slug": "lightning-channel",
        "name": "Thor Lightning Channel Capacity",
        "currency": "SAT",
        "range": {"min": 500000, "max": 16777215, "step": 1},
        "priceRate": "0.015186",
        "purchaseFee": 10023,
        "delivery": "link",
        "deliveryLink": "https://shop.example/thor/open",
        "instructions": "Open your new lightning channel with the link.",
    },
    {
        "slug": "coffee-card",
        "name": "Coffee card",
        "currency": "USD",
        "packages": ["10", "25"],
        "delivery": "code",
    },
]


@pytest.fixture(autouse=True)
def _eager_celery(monkeypatch):
    """Tasks run in this process when they are queued (after commit), as a worker would."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture
def store(live_server, settings):
    settings.LIGHTNING_BACKEND = "devnode"
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    settings.PUBLIC_BASE_URL = live_server.url
    settings.FIXED_RATES = "USD=100000,EUR=92000"
    shop = Shop(live_server.url, "Thor Store")
    for operator in SEED_OPERATORS:
        made = shop.call("POST", "/api/orders/operators", json=operator)
        assert made.status_code == 201, made.text
    stocked = shop.call(
        "POST", "/api/orders/operators/coffee-card/codes", json={"codes": ["CAFE-0001"]}
    )
    assert stocked.json() == {"added": 1, "inStock": 1}
    return shop


@pytest.fixture
def reseller(store):
    made = store.call("POST", "/api/orders/customers", json={"name": "Reseller Ltd"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["apiKey"] and body["apiSecret"]
    return httpx.Client(
        base_url=store.base, auth=(body["apiKey"], body["apiSecret"]), timeout=30
    ), body


def curl(*args: str) -> str:
    assert shutil.which("curl"), "curl is needed"
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, check=True).stdout


def order_of(public_id: str) -> Order:
    return Order.objects.get(public_id=public_id)


def test_the_seeds_curl_examples_work_as_written(store, reseller):
    _, credentials = reseller
    user = f"{credentials['apiKey']}:{credentials['apiSecret']}"
    api = f"{store.base}/v1"

    assert curl("-u", user, f"{api}/test") == "Hello World!"

    inventory = json.loads(curl("-u", user, f"{api}/inventory/lightning-recharge"))
    operator = inventory["operator"]
    assert operator["name"] == "Thor Recharge" and operator["slug"] == "lightning-recharge"
    assert operator["isRanged"] is True and operator["currency"] == "SAT"
    assert operator["range"]["min"] == 500 and operator["range"]["max"] == 4294967
    assert operator["range"]["customerSatoshiPriceRate"] == 1.02
    assert operator["range"]["purchaseFee"] == 300

    body = '{ "paymentMethod": "lightning", "operatorSlug": "lightning-channel", "valuePackage": "2000000", "email": "[email protected]"}'  # noqa: E501
    created = json.loads(
        curl("-u", user, "-H", "Content-Type: application/json", f"{api}/order", "-d", body)
    )
    assert created["email"] == "[email protected]" and created["expired"] is False
    assert created["value"] == "2000000" and created["product"] == "lightning-channel"
    assert created["price"] == 2_000_000 * 15186 // 1_000_000 + 10023  # value x rate + fee
    assert created["partialPayment"] is False and created["userRef"] is None
    assert created["status"] == "unpaid"
    assert created["payment"]["altcoinCode"] == "LNBC"
    assert created["payment"]["satoshiPrice"] == created["price"]
    assert created["payment"]["lightningInvoice"].startswith("lnbc")

    polled = json.loads(
        curl("-u", user, "-H", "Content-Type: application/json", f"{api}/order/{created['id']}")
    )
    assert polled["status"] == "unpaid"
    paid_from_outside(created["payment"]["lightningInvoice"])
    done = json.loads(curl("-u", user, f"{api}/order/{created['id']}"))
    assert done["status"] == "success"
    assert done["delivery"] == {
        "type": "link",
        "link": "https://shop.example/thor/open",
        "other": "Open your new lightning channel with the link.",
    }

    # The seed's recharge example pays with bitcoin: a clear 400, nothing made.
    recharge = (
        '{ "paymentMethod": "bitcoin", "operatorSlug": "lightning-recharge", '
        '"valuePackage": "1000", "email": "[email protected]"}'
    )
    refused = json.loads(
        curl("-u", user, "-H", "Content-Type: application/json", f"{api}/order", "-d", recharge)
    )
    assert refused["status"] == 400 and "Only lightning" in refused["errors"]["paymentMethod"][0]
    assert Order.objects.count() == 1


def test_a_purchase_from_balance_answers_payment_pending_then_succeeds(store, reseller):
    client, credentials = reseller
    topup = client.post("/v1/account_balance/topup", json={"amount": 50_000})
    assert topup.status_code == 201, topup.text
    paid_from_outside(topup.json()["paymentRequest"])
    assert client.get("/v1/account_balance").json()["balance"] == 50_000
    merchant_before = store.balance_msat()

    bought = client.post(
        "/v1/purchase",
        json={"operatorSlug": "lightning-recharge", "valuePackage": "1000", "email": "a@b.co"},
    )

    assert bought.status_code == 200, bought.text
    assert bought.json()["status"] == "payment_pending"  # the answer, before the worker's turn
    price = bought.json()["price"]
    assert price == 1020 + 300
    order = client.get(f"/v1/order/{bought.json()['id']}").json()
    assert order["status"] == "success" and order["paymentMethod"] == "balance"
    assert client.get("/v1/account_balance").json()["balance"] == 50_000 - price
    assert store.balance_msat() == merchant_before + price * 1000
    wallet = Wallet.objects.get(pk=order_of(order["id"]).customer.wallet_id)
    assert wallet.balance_msat == wallets.ledger_balance_msat(wallet)
    assert_ledger_consistent(store)
    # More than the balance holds: failed, nothing moved.
    big = client.post(
        "/v1/purchase", json={"operatorSlug": "lightning-recharge", "valuePackage": "4000000"}
    ).json()
    final = client.get(f"/v1/order/{big['id']}").json()
    assert final["status"] == "failed" and "Insufficient balance" in final["failureReason"]
    assert client.get("/v1/account_balance").json()["balance"] == 50_000 - price


def test_codes_are_delivered_once_and_out_of_stock_after_payment_is_refunded(
    store, reseller, receiver
):
    client, _ = reseller
    body = {
        "operatorSlug": "coffee-card",
        "valuePackage": "10",
        "paymentMethod": "lightning",
        "email": "buyer@example.com",
        "webhook_url": receiver.url,
        "userRef": "internal-id-01",
    }
    first = client.post("/v1/order", json=body).json()
    second = client.post("/v1/order", json=body).json()  # one code left for two orders
    assert first["price"] == 10_000 == second["price"]  # 10 USD at 100,000 USD/BTC

    paid_from_outside(first["payment"]["lightningInvoice"])
    paid_from_outside(second["payment"]["lightningInvoice"])

    got = client.get(f"/v1/order/{first['id']}").json()
    assert got["status"] == "success" and got["delivery"]["code"] == "CAFE-0001"
    failed = client.get(f"/v1/order/{second['id']}").json()
    assert failed["status"] == "failed" and "out of stock" in failed["failureReason"]
    refund = Refund.objects.get(public_id=failed["delivery"]["refundId"])
    assert refund.source == "order" and refund.state == "claimable"
    assert refund.amount_msat == 10_000_000 and refund.email == "buyer@example.com"

    # The buyer claims the refund link with a wallet: the order turns refunded.
    withdraw = httpx.get(f"{store.base}/lnurlw/{refund.claim_token}").json()
    answer = httpx.get(
        withdraw["callback"], params={"k1": withdraw["k1"], "pr": remote_invoice(10_000)}
    ).json()
    assert answer == {"status": "OK"}
    assert client.get(f"/v1/order/{second['id']}").json()["status"] == "refunded"

    # The webhook_url got the seed's body (as GET shows it), signed with the default secret.
    secret = store.call("GET", "/api/webhooks/default-secret").json()["secret"]
    wait_for(lambda: len(receiver.requests) >= 3, 30, "three order webhooks")
    bodies = [Webhook(secret).verify(r.body, r.headers) for r in receiver.requests]
    by_status = {(b["id"], b["status"]) for b in bodies}
    assert by_status == {
        (first["id"], "success"),
        (second["id"], "failed"),
        (second["id"], "refunded"),
    }
    success = next(b for b in bodies if b["status"] == "success")
    assert success == client.get(f"/v1/order/{first['id']}").json()
    assert success["userRef"] == "internal-id-01"
    assert_ledger_consistent(store)


def test_out_of_stock_after_a_purchase_from_balance_goes_back_to_the_balance(store, reseller):
    client, _ = reseller
    topup = client.post("/v1/account_balance/topup", json={"amount": 30_000}).json()
    paid_from_outside(topup["paymentRequest"])
    from django.db import transaction

    from orders import services
    from orders.models import Customer

    customer = Customer.objects.get(name="Reseller Ltd")
    terms = {"operator_slug": "coffee-card", "value_package": "10"}
    with transaction.atomic():  # both pass the stock check before either is processed
        orders = [services.create_order(customer, terms, "balance") for _ in range(2)]
    statuses = sorted(client.get(f"/v1/order/{o.public_id}").json()["status"] for o in orders)
    assert statuses == ["refunded", "success"]
    assert client.get("/v1/account_balance").json()["balance"] == 20_000


@pytest.mark.parametrize(
    "body, field",
    [
        ({"valuePackage": "1000", "paymentMethod": "lightning"}, "operatorSlug"),
        ({"operatorSlug": "lightning-recharge", "paymentMethod": "lightning"}, "valuePackage"),
        (
            {
                "operatorSlug": "lightning-recharge",
                "valuePackage": "499",
                "paymentMethod": "lightning",
            },
            "valuePackage",
        ),  # noqa: E501
        (
            {"operatorSlug": "coffee-card", "valuePackage": "11", "paymentMethod": "lightning"},
            "valuePackage",
        ),  # noqa: E501
        (
            {"operatorSlug": "lightning-recharge", "valuePackage": "1000", "paymentMethod": "dash"},
            "paymentMethod",
        ),  # noqa: E501
        ({"operatorSlug": "lightning-recharge", "valuePackage": "1000"}, "paymentMethod"),
        (
            {
                "operatorSlug": "lightning-recharge",
                "valuePackage": "1000",
                "paymentMethod": "lightning",
                "userRef": "x" * 129,
            },
            "userRef",
        ),  # noqa: E501
        (
            {
                "operatorSlug": "lightning-recharge",
                "valuePackage": "1000",
                "paymentMethod": "lightning",
                "refund_address": "1fdsfjakiwlewkld3845kd8",
            },
            "refund_address",
        ),  # noqa: E501
        (
            {
                "operatorSlug": "lightning-recharge",
                "valuePackage": True,
                "paymentMethod": "lightning",
            },
            "valuePackage",
        ),  # noqa: E501
    ],
)
def test_bad_orders_are_400s_naming_the_field(store, reseller, body, field):
    client, _ = reseller
    answer = client.post("/v1/order", json=body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["errors"]
    assert Order.objects.count() == 0


def test_credentials_are_checked_and_customers_see_only_their_orders(store, reseller):
    client, credentials = reseller
    anonymous = httpx.get(f"{store.base}/v1/test")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith(
        "Basic"
    )
    wrong = httpx.get(f"{store.base}/v1/test", auth=(credentials["apiKey"], "not the secret"))
    assert wrong.status_code == 401
    mine = client.post(
        "/v1/order",
        json={
            "operatorSlug": "lightning-recharge",
            "valuePackage": "1000",
            "paymentMethod": "lightning",
        },  # noqa: E501
    ).json()
    other = store.call("POST", "/api/orders/customers", json={"name": "Other"}).json()
    as_other = httpx.get(
        f"{store.base}/v1/order/{mine['id']}", auth=(other["apiKey"], other["apiSecret"])
    )
    assert as_other.status_code == 404
    unknown = client.get("/v1/inventory/no-such-thing")
    assert unknown.status_code == 404
    listed = store.call("GET", "/api/orders").json()
    assert [o["id"] for o in listed["items"]] == [mine["id"]]


def test_a_recharge_delivers_sats_the_buyer_withdraws_with_any_wallet(store, reseller):
    client, _ = reseller
    made = client.post(
        "/v1/order",
        json={
            "operatorSlug": "lightning-recharge",
            "valuePackage": "1000",
            "paymentMethod": "lightning",
        },  # noqa: E501
    ).json()
    paid_from_outside(made["payment"]["lightningInvoice"])
    merchant_before = store.balance_msat()

    order = client.get(f"/v1/order/{made['id']}").json()

    assert order["status"] == "success"
    thor = order["thorInfo"]
    assert thor["lnurl"].startswith("lightning:lnurl1") and len(thor["k1"]) == 64
    assert thor["link"].endswith(thor["k1"])
    assert thor["other"] == "Withdraw your sats with any Lightning wallet."
    claimed = js_lnurl_withdraw(thor["lnurl"].removeprefix("lightning:"), remote_invoice(1000))
    assert claimed["params"]["maxWithdrawable"] == 1_000_000
    assert claimed["answer"] == {"status": "OK"}
    assert store.balance_msat() == merchant_before - 1_000_000  # the value, not the price
    voucher = Refund.objects.get(claim_token=thor["k1"])
    assert voucher.purpose == "delivery" and voucher.state == "completed"
    # Single use, and it is no refund: the order's payment can still be refunded in full.
    again = js_lnurl_withdraw(thor["lnurl"].removeprefix("lightning:"), remote_invoice(1000))
    assert again["params"]["status"] == "ERROR"
    assert not WebhookEvent.objects.filter(type__startswith="refund.").exists()
