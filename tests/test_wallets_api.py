"""The LNbits payments API over real HTTP (a live server), with the dev node: receive, pay
another merchant (internal), pay an invoice the gateway did not make (through the node),
insufficient balance, scopes, tenancy, double pays, lists and statistics, and a ledger
whose cached balance always equals the sum of its rows."""

import hashlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from checkout.models import ApiKey
from checkout.services import create_merchant, issue_api_key
from lightning import invoice_codec
from lightning import services as lightning_services
from lightning.backends import get_backend
from lightning.models import DevNodeInvoice, Invoice
from wallets import services as wallets
from wallets.models import LedgerEntry, Payment, Wallet
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def base(live_server, settings):
    settings.LIGHTNING_BACKEND = "devnode"
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    return live_server.url


class Shop:
    """A merchant and its two keys, calling the API over HTTP."""

    def __init__(self, base, name):
        self.base = base
        self.merchant, self.admin_key = create_merchant(name)
        _, self.invoice_key = issue_api_key(self.merchant, ApiKey.Kind.INVOICE, "invoice")
        self.http = httpx.Client(base_url=base, timeout=30)

    def call(self, method, path, key="admin", **kwargs):
        headers = {"X-Api-Key": self.admin_key if key == "admin" else self.invoice_key}
        if key is None:
            headers = {}
        return self.http.request(method, path, headers=headers, **kwargs)

    def receive(self, sats, **fields):
        body = {"out": False, "amount": sats, **fields}
        answer = self.call("POST", "/api/v1/payments", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def pay(self, bolt11, key="admin"):
        return self.call("POST", "/api/v1/payments", key=key, json={"out": True, "bolt11": bolt11})

    def wallet(self) -> Wallet:
        return wallets.wallet_for(self.merchant)

    def balance_msat(self) -> int:
        return self.call("GET", "/api/v1/wallet").json()["balance"]


def paid_from_outside(bolt11: str) -> None:
    """A wallet elsewhere pays it (the dev node's payer), and the gateway records it (as its
    watcher would)."""
    get_backend().pay_invoice(bolt11)
    invoice = Invoice.objects.get(bolt11=bolt11)
    lightning_services.refresh_from_node(invoice)


def fund(shop: Shop, sats: int) -> None:
    paid_from_outside(shop.receive(sats)["payment_request"])


def assert_ledger_consistent(*shops):
    for shop in shops:
        wallet = Wallet.objects.get(pk=shop.wallet().pk)
        assert wallet.balance_msat == wallets.ledger_balance_msat(wallet)
        assert wallet.balance_msat >= 0


def remote_invoice(sats: int) -> str:
    """An invoice the gateway did not make: the dev node's own, as a payee elsewhere."""
    return get_backend().create_invoice(sats * 1000, "remote payee", 600).bolt11


@pytest.fixture
def shop(base):
    return Shop(base, "Alice's Shop")


@pytest.fixture
def other(base):
    return Shop(base, "Bob's Shop")


def test_receive_then_the_payment_shows_paid_and_the_balance_grows(shop):
    created = shop.receive(1500, memo="coffee", extra={"order_id": "123"})
    assert set(created) >= {"payment_hash", "payment_request", "bolt11", "checking_id"}
    assert created["bolt11"] == created["payment_request"]
    assert created["checking_id"] == created["payment_hash"]
    status = shop.call("GET", f"/api/v1/payments/{created['checking_id']}").json()
    assert status["paid"] is False and status["details"]["status"] == "pending"

    paid_from_outside(created["payment_request"])

    status = shop.call("GET", f"/api/v1/payments/{created['checking_id']}", key="invoice").json()
    assert status["paid"] is True
    details = status["details"]
    assert details["amount"] == 1500 and details["status"] == "success"
    assert details["memo"] == "coffee" and details["extra"] == {"order_id": "123"}
    assert hashlib.sha256(bytes.fromhex(status["preimage"])).hexdigest() == created["payment_hash"]
    assert shop.balance_msat() == 1_500_000
    assert_ledger_consistent(shop)


def test_amounts_past_32_bits_of_millisatoshis_are_kept_whole(shop, other):
    """Balances move with `F("balance_msat") + amount`. With PostgreSQL's server-side
    parameter binding, Django stored 4.3e12 as 737,736,704 (wrapped at 32 bits) in such an
    update, while every test here moved less than 2^31 msat (2,147 sats)."""
    big = 5_000_000  # sats: 5e9 msat, more than 2^32
    fund(shop, big)
    assert shop.balance_msat() == big * 1000
    invoice = other.receive(4_300_000)
    assert shop.pay(invoice["payment_request"]).status_code == 201
    assert shop.balance_msat() == 700_000_000
    assert other.balance_msat() == 4_300_000_000
    listed = other.call("GET", f"/api/v1/payments/{invoice['payment_hash']}").json()
    assert listed["details"]["amount"] == 4_300_000
    assert_ledger_consistent(shop, other)


def test_the_key_also_works_as_lnbits_api_key_query_parameter(shop):
    answer = shop.http.get("/api/v1/wallet", params={"api-key": shop.invoice_key})
    assert answer.status_code == 200
    assert answer.json() == {"name": "Alice's Shop", "balance": 0}  # no id for an invoice key
    admin = shop.http.get("/api/v1/wallet", params={"api-key": shop.admin_key}).json()
    assert admin["id"] == shop.wallet().public_id


def test_paying_another_merchant_settles_inside_the_gateway(shop, other):
    fund(shop, 5000)
    invoice = other.receive(1200, memo="from alice")

    answer = shop.pay(invoice["payment_request"])

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["payment_hash"] == invoice["payment_hash"] and body["checking_id"]
    assert hashlib.sha256(bytes.fromhex(body["preimage"])).hexdigest() == body["payment_hash"]
    assert shop.balance_msat() == 3_800_000  # no routing fee inside the gateway
    assert other.balance_msat() == 1_200_000
    received = other.call("GET", f"/api/v1/payments/{invoice['payment_hash']}").json()
    assert received["paid"] is True and received["preimage"] == body["preimage"]
    # Off the node: nobody outside can pay it a second time.
    node_row = DevNodeInvoice.objects.get(payment_hash=invoice["payment_hash"])
    assert node_row.state == DevNodeInvoice.State.CANCELED
    sent = shop.call("GET", f"/api/v1/payments/{body['checking_id']}").json()["details"]
    assert sent["amount"] == -1200 and sent["fee"] == 0 and sent["status"] == "success"
    assert_ledger_consistent(shop, other)


def test_paying_an_invoice_from_elsewhere_goes_through_the_node(shop):
    fund(shop, 5000)
    bolt11 = remote_invoice(700)

    answer = shop.pay(bolt11)

    assert answer.status_code == 201, answer.text
    payment = Payment.objects.get(payment_hash=answer.json()["payment_hash"], direction="out")
    assert payment.status == "success" and not payment.internal
    assert DevNodeInvoice.objects.get(payment_hash=payment.payment_hash).state == "SETTLED"
    assert shop.balance_msat() == 4_300_000
    # The fee reserve was taken while in flight, and handed back: the ledger says so.
    kinds = list(payment.entries.values_list("kind", "amount_msat"))
    assert kinds == [("reserve", -(700_000 + 10_000)), ("settle", 10_000)]
    assert_ledger_consistent(shop)


def test_insufficient_balance_is_refused_before_the_node_is_asked(shop):
    fund(shop, 100)
    bolt11 = remote_invoice(200)

    answer = shop.pay(bolt11)

    assert answer.status_code == 402
    body = answer.json()
    assert body["error"] == "insufficient_balance"
    assert "100 sats available" in body["detail"] and "210 sats" in body["detail"]
    assert DevNodeInvoice.objects.get(bolt11=bolt11).state == "OPEN"  # never sent
    assert not Payment.objects.filter(direction="out").exists()
    assert shop.balance_msat() == 100_000


def test_an_invoice_key_cannot_pay(shop):
    fund(shop, 1000)
    answer = shop.pay(remote_invoice(10), key="invoice")
    assert answer.status_code == 403
    assert "admin key" in answer.json()["detail"]
    assert not Payment.objects.filter(direction="out").exists()


def test_another_wallets_payment_is_a_404_and_keyless_lookups_show_no_details(shop, other):
    created = shop.receive(100)
    assert other.call("GET", f"/api/v1/payments/{created['checking_id']}").status_code == 404
    keyless = shop.call("GET", f"/api/v1/payments/{created['checking_id']}", key=None).json()
    assert keyless == {"paid": False, "status": "pending", "preimage": None}
    listed = other.call("GET", "/api/v1/payments").json()
    assert listed == []


def test_paying_the_same_invoice_twice_pays_once(shop, other):
    fund(shop, 5000)
    bolt11 = other.receive(1000)["payment_request"]

    first, second = shop.pay(bolt11), shop.pay(bolt11)

    assert first.status_code == second.status_code == 201
    assert first.json()["payment_hash"] == second.json()["payment_hash"]
    assert Payment.objects.filter(direction="out").count() == 1
    assert shop.balance_msat() == 4_000_000
    assert other.balance_msat() == 1_000_000
    assert_ledger_consistent(shop, other)


def test_a_wallet_cannot_pay_its_own_invoice(shop):
    fund(shop, 1000)
    answer = shop.pay(shop.receive(10)["payment_request"])
    assert answer.status_code == 400 and answer.json()["error"] == "own_invoice"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"out": False, "amount": 10.5}, "amount"),
        ({"out": False, "amount": "10"}, "amount"),
        ({"out": False, "amount": 0}, "amount"),
        ({"out": False}, "amount"),
        ({"out": True}, "bolt11"),
        ({"out": False, "amount": 10, "payment_hash": "xyz"}, "payment_hash"),
        ({"out": False, "amount": 10, "webhook": "ftp://example.com"}, "webhook"),
    ],
)
def test_bad_requests_are_4xx_problems_naming_the_field(shop, body, field):
    answer = shop.call("POST", "/api/v1/payments", json=body)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert field in problem["errors"] and problem["detail"]
    assert not Payment.objects.exists()


def test_an_unreadable_or_expired_invoice_is_refused_with_the_reason(shop):
    fund(shop, 1000)
    garbage = shop.pay("lnbcrt1notaninvoice")
    assert garbage.status_code == 400 and garbage.json()["error"] == "invalid_invoice"
    expired = get_backend().create_invoice(1000, "old", 1).bolt11
    import time

    time.sleep(2.1)
    answer = shop.pay(expired)
    assert answer.status_code == 400 and answer.json()["error"] == "invoice_expired"


def test_lists_paginate_filter_and_sign_outgoing_amounts(shop, other):
    fund(shop, 5000)
    for sats in (100, 200):
        assert shop.pay(other.receive(sats)["payment_request"]).status_code == 201
    shop.receive(50)  # pending

    listed = shop.call("GET", "/api/v1/payments").json()
    assert [p["amount"] for p in listed] == [50, -200, -100, 5000]
    assert [p["status"] for p in listed] == ["pending", "success", "success", "success"]
    page = shop.call("GET", "/api/v1/payments/paginated", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 4 and [p["amount"] for p in page["data"]] == [-200, -100]
    pending = shop.call("GET", "/api/v1/payments", params={"status": "pending"}).json()
    assert [p["amount"] for p in pending] == [50]
    too_many = shop.call("GET", "/api/v1/payments", params={"limit": 1000})
    assert too_many.status_code == 400 and "limit" in too_many.json()["errors"]

    history = shop.call("GET", "/api/v1/payments/history", params={"group": "day"}).json()
    assert len(history) == 1 and history[0]["income"] == 5000 and history[0]["spending"] == 300
    daily = shop.call("GET", "/api/v1/payments/stats/daily").json()
    assert daily[0]["count"] == 3 and daily[0]["total"] == 4700
    counts = shop.call("GET", "/api/v1/payments/stats/count").json()
    assert counts == [{"tag": None, "count": 3}]
    stats = shop.call("GET", "/api/v1/payments/stats/wallets").json()
    assert stats == [
        {
            "wallet_id": shop.wallet().public_id,
            "wallet_name": "Alice's Shop",
            "total_income": 5000,
            "total_spending": 300,
            "payment_count": 3,
        }
    ]


def test_32_concurrent_payments_never_take_the_balance_below_zero(shop, other):
    fund(shop, 10_000)
    invoices = [other.receive(500)["payment_request"] for _ in range(32)]

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(shop.pay, invoices))

    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 20 and codes.count(402) == 12, codes
    assert shop.balance_msat() == 0
    assert other.balance_msat() == 10_000_000
    assert_ledger_consistent(shop, other)
    # The refused ones were never taken off the node: still payable from elsewhere.
    refused = [i for i, a in zip(invoices, answers, strict=True) if a.status_code == 402]
    assert all(DevNodeInvoice.objects.get(bolt11=b).state == "OPEN" for b in refused)


def test_receipts_of_checkouts_credit_the_merchants_wallet(shop):
    answer = shop.call("POST", "/api/checkout/invoices", json={"amount": "2100", "currency": "SAT"})
    assert answer.status_code == 201, answer.text
    paid_from_outside(answer.json()["lightningInvoice"])
    assert shop.balance_msat() == 2_100_000
    listed = shop.call("GET", "/api/v1/payments").json()
    assert listed[0]["tag"] == "checkout" and listed[0]["status"] == "success"
    # A checkout announces itself: no wallet event doubles its payment.completed.
    assert not WebhookEvent.objects.filter(source__startswith="wallet-payment").exists()


def test_outgoing_outcomes_are_announced_to_the_merchants_endpoints(shop, other):
    shop.call("POST", "/api/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    fund(shop, 1000)
    shop.pay(other.receive(100)["payment_request"])
    shop.pay(remote_invoice(10_000))  # more than the balance: refused, nothing to announce

    types = list(
        WebhookEvent.objects.filter(merchant=shop.merchant)
        .exclude(type="invoice.created")
        .values_list("type", flat=True)
    )
    assert types == ["payment.completed", "payment.sent"]


def test_ledger_rows_cannot_be_changed_or_deleted(shop):
    fund(shop, 10)
    entry = LedgerEntry.objects.get()
    entry.amount_msat = 10**12
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()
    assert LedgerEntry.objects.get().amount_msat == 10_000


def test_description_hashes_go_into_the_invoice_instead_of_the_memo(shop):
    metadata = b'[["text/plain", "LNURL-pay to alice"]]'
    expected = hashlib.sha256(metadata).hexdigest()
    for field, value in (("description_hash", expected), ("unhashed_description", metadata.hex())):
        created = shop.receive(21, memo="shown in the list", **{field: value})
        decoded = invoice_codec.decode_invoice(created["bolt11"])
        assert decoded.description_hash == expected and not decoded.description
        details = shop.call("GET", f"/api/v1/payments/{created['checking_id']}").json()["details"]
        assert details["memo"] == "shown in the list"


def test_a_payment_hash_used_already_is_a_409(shop):
    payment_hash = hashlib.sha256(b"escrow").hexdigest()
    shop.receive(10, payment_hash=payment_hash)
    again = shop.call(
        "POST", "/api/v1/payments", json={"out": False, "amount": 10, "payment_hash": payment_hash}
    )
    assert again.status_code == 409 and again.json()["error"] == "duplicate_payment_hash"
    assert Payment.objects.count() == 1


def test_paid_l402_challenges_credit_the_merchants_wallet(shop):
    from l402.services.challenges import create_merchant_challenge

    challenge = create_merchant_challenge(shop.merchant, "/reports/1", 42)
    paid_from_outside(challenge.invoice.bolt11)
    assert shop.balance_msat() == 42_000
    listed = shop.call("GET", "/api/v1/payments").json()
    assert [(p["tag"], p["amount"], p["status"]) for p in listed] == [("l402", 42, "success")]
    assert_ledger_consistent(shop)


@pytest.fixture
def lnd_shop(live_server, settings, tmp_path):
    """A shop on the lnd backend, against the simulated LND over gRPC, funded by a payer
    elsewhere."""
    from lightning.simnode import SimNode

    node = SimNode(tmp_path / "lnd").start()
    settings.LIGHTNING_BACKEND = "lnd"
    settings.LND_GRPC_HOST = node.address
    settings.LND_TLS_CERT = str(node.cert_path)
    settings.LND_MACAROON = str(node.macaroon_path)
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    shop = Shop(live_server.url, "Remote Payer")
    shop.call("POST", "/api/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    made = shop.receive(5000)
    node.pay(made["bolt11"])
    lightning_services.refresh_from_node(Invoice.objects.get(bolt11=made["bolt11"]))
    yield shop, node
    node.stop()


def test_a_payment_the_node_fails_is_released_and_announced(lnd_shop):
    shop, node = lnd_shop
    node.add_payment_rule("fail", reason="NO_ROUTE")
    remote = node.create_remote_invoice(1_000_000, "no route")

    answer = shop.pay(remote["bolt11"])

    assert answer.status_code == 520
    body = answer.json()
    assert body["status"] == "failed" and "no route" in body["detail"]
    assert shop.balance_msat() == 5_000_000
    types = WebhookEvent.objects.filter(type__startswith="payment.").values_list("type", flat=True)
    assert "payment.failed" in list(types)
    assert_ledger_consistent(shop)
    # A failed payment may be tried again, and then it pays.
    retry = shop.pay(remote["bolt11"])
    assert retry.status_code == 201, retry.text
    assert retry.json()["fee"] > 0
    assert Payment.objects.filter(direction="out", payment_hash=remote["payment_hash"]).count() == 2


def test_a_payment_still_in_flight_answers_pending_never_failed(lnd_shop, settings):
    shop, node = lnd_shop
    settings.WALLETS_PAY_TIMEOUT_SECONDS = 1
    node.add_payment_rule("hold")
    remote = node.create_remote_invoice(1_000_000, "slow route")

    answer = shop.pay(remote["bolt11"])

    assert answer.status_code == 520
    assert answer.json()["status"] == "pending"
    payment = Payment.objects.get(direction="out")
    assert payment.status == "pending"
    assert shop.balance_msat() == 5_000_000 - 1_000_000 - payment.fee_limit_msat
    node.release_payment(remote["payment_hash"], succeed=True)
    settings.WALLETS_SWEEP_SECONDS = 0  # the sweep looks at payments at least this old
    assert wallets.resolve_pending_payments()["succeeded"] == 1
    payment.refresh_from_db()
    assert payment.status == "success" and payment.fee_msat > 0
    assert shop.balance_msat() == 4_000_000 - payment.fee_msat
    assert_ledger_consistent(shop)
