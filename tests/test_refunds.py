"""Refunds over real HTTP (a live server, the dev node): links claimed by a wallet's LNURL
client nobody here wrote (js-lnurl, run by Node.js) or by a pasted invoice, Lightning
address refunds against a loopback LNURL-pay server, partial refunds racing, fiat rates,
expiry and reissue, webhooks and the buyer's emails."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail

from config.celery import app as celery_app
from lightning.backends import get_backend
from lightning.models import DevNodeInvoice
from refunds.models import Refund
from wallets.models import Payment
from webhooks.models import WebhookEvent

from .test_wallets_api import (
    Shop,
    assert_ledger_consistent,
    fund,
    paid_from_outside,
    remote_invoice,
)

pytestmark = pytest.mark.django_db(transaction=True)
FEE_BUDGET = 1000  # sats

NODE_MODULES = Path(
    os.environ.get("L402_NODE_MODULES", Path(__file__).parent.parent / ".venv/npm/node_modules")
)


@pytest.fixture(autouse=True)
def _eager_celery(monkeypatch):
    """Tasks run in this process when they are queued (after commit), as a worker would."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture
def base(live_server, settings):
    settings.LIGHTNING_BACKEND = "devnode"
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    settings.REFUNDS_ALLOW_PRIVATE_TARGETS = True
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server.url


@pytest.fixture
def shop(base):
    shop = Shop(base, "Refund Roasters")
    hook = shop.call("POST", "/api/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["*"]})
    assert hook.status_code == 201, hook.text
    fund(shop, FEE_BUDGET)  # payouts reserve a routing fee budget on top of the amount
    return shop


def paid_checkout(shop: Shop, **fields) -> dict:
    body = {"amount": "10000", "currency": "SAT", "email": "buyer@example.com", **fields}
    made = shop.call("POST", "/api/checkout/invoices", json=body)
    assert made.status_code == 201, made.text
    paid_from_outside(made.json()["lightningInvoice"])
    return made.json()


def refund(shop: Shop, invoice_id: str, key="admin", **body):
    return shop.call("POST", f"/api/checkout/invoices/{invoice_id}/refunds", key=key, json=body)


def events(kind: str) -> list[dict]:
    return [json.loads(e.body)["data"] for e in WebhookEvent.objects.filter(type=kind)]


def js_lnurl_withdraw(lnurl: str, invoice: str) -> dict:
    """A wallet's side of LUD-03 with js-lnurl: decode the bech32 LNURL and fetch the
    withdraw request (getParams), then hand the invoice to its callback."""
    script = """
const {getParams} = require('js-lnurl');
const fetch = require('cross-fetch');
(async () => {
  const params = await getParams(process.argv[1]);
  if (params.status === 'ERROR') { console.log(JSON.stringify({params})); return; }
  const sep = params.callback.includes('?') ? '&' : '?';
  const url = params.callback + sep + 'k1=' + encodeURIComponent(params.k1) +
    '&pr=' + encodeURIComponent(process.argv[2]);
  const answer = await (await fetch(url)).json();
  console.log(JSON.stringify({params, answer}));
})().catch((e) => { console.error(e); process.exit(1); });
"""
    run = subprocess.run(
        ["node", "-e", script, lnurl, invoice],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# --- refund links ---------------------------------------------------------------------------


def test_a_full_refund_is_claimed_by_an_lnurl_wallet_and_paid_once(shop):
    checkout = paid_checkout(shop)
    before = shop.balance_msat()

    made = refund(shop, checkout["invoiceId"], reason="out of stock")

    assert made.status_code == 201, made.text
    body = made.json()
    assert body["state"] == "claimable"
    assert body["amountSats"] == 10_000 and body["source"] == "checkout"
    assert body["lnurl"].startswith("lnurl1") and body["claimUrl"].startswith(shop.base)
    # The buyer is emailed the link.
    assert [m.to for m in mail.outbox] == [["buyer@example.com"]]
    assert body["claimUrl"] in mail.outbox[0].body

    invoice = remote_invoice(10_000)
    claimed = js_lnurl_withdraw(body["lnurl"], invoice)

    params = claimed["params"]
    assert params["tag"] == "withdrawRequest"
    assert params["minWithdrawable"] == params["maxWithdrawable"] == 10_000_000
    assert claimed["answer"] == {"status": "OK"}
    shown = shop.call("GET", f"/api/refunds/{body['refundId']}").json()
    assert shown["state"] == "completed"
    payment_hash = shown["payoutPaymentHash"]
    assert DevNodeInvoice.objects.get(payment_hash=payment_hash).state == "SETTLED"
    assert hashlib.sha256(bytes.fromhex(shown["payoutPreimage"])).hexdigest() == payment_hash
    assert shop.balance_msat() == before - 10_000_000
    assert [e["refundId"] for e in events("refund.created")] == [body["refundId"]]
    assert [e["state"] for e in events("refund.completed")] == ["completed"]
    # The receipt carries the proof of payment.
    assert shown["payoutPreimage"] in mail.outbox[-1].body
    # Single use: the same link cannot be claimed again, by any means.
    again = js_lnurl_withdraw(body["lnurl"], remote_invoice(10_000))
    assert again["params"]["status"] == "ERROR"
    assert "paid" in again["params"]["reason"]
    # And nothing is left to refund.
    more = refund(shop, checkout["invoiceId"], amountSats=1)
    assert more.status_code == 409 and more.json()["error"] == "fully_refunded"
    assert Payment.objects.filter(direction="out", status="success").count() == 1
    assert_ledger_consistent(shop)


def test_the_buyer_can_paste_an_invoice_of_the_exact_amount_on_the_refund_page(shop):
    checkout = paid_checkout(shop, email="")
    body = refund(shop, checkout["invoiceId"], amountSats=2500).json()
    assert mail.outbox == []  # no email known: the merchant passes the link on
    page = shop.http.get(body["claimUrl"])
    assert page.status_code == 200 and "2,500 sats" in page.text and body["lnurl"] in page.text

    wrong = shop.http.post(body["claimUrl"], data={"invoice": remote_invoice(2400)})
    assert wrong.status_code == 400 and "exactly 2,500 sats" in wrong.text
    garbage = shop.http.post(body["claimUrl"], data={"invoice": "lnbc1nonsense"})
    assert garbage.status_code == 400 and "not a Lightning invoice" in garbage.text

    paid = shop.http.post(body["claimUrl"], data={"invoice": remote_invoice(2500)})

    assert paid.status_code == 200, paid.text
    assert "Refund sent" in paid.text
    refund_row = Refund.objects.get(public_id=body["refundId"])
    assert refund_row.state == "completed" and refund_row.payout.preimage in paid.text
    assert (
        shop.http.post(body["claimUrl"], data={"invoice": remote_invoice(2500)}).status_code == 409
    )


def test_an_expired_link_is_refused_then_reissued_with_a_new_token(shop):
    checkout = paid_checkout(shop)
    body = refund(shop, checkout["invoiceId"], amountSats=1000).json()
    Refund.objects.filter(public_id=body["refundId"]).update(claim_expires_at="2000-01-01T00:00Z")

    late = js_lnurl_withdraw(body["lnurl"], remote_invoice(1000))
    assert late["params"]["status"] == "ERROR" and "expired" in late["params"]["reason"]
    assert shop.call("GET", f"/api/refunds/{body['refundId']}").json()["state"] == "expired"

    reissued = shop.call("POST", f"/api/refunds/{body['refundId']}/reissue")

    assert reissued.status_code == 200, reissued.text
    fresh = reissued.json()
    assert fresh["state"] == "claimable" and fresh["lnurl"] != body["lnurl"]
    assert shop.http.get(body["claimUrl"]).status_code == 404  # the old link is dead
    assert js_lnurl_withdraw(fresh["lnurl"], remote_invoice(1000))["answer"] == {"status": "OK"}
    assert Refund.objects.get(public_id=body["refundId"]).state == "completed"
    again = shop.call("POST", f"/api/refunds/{body['refundId']}/reissue")
    assert again.status_code == 409 and again.json()["error"] == "not_reissuable"


# --- what may be refunded -------------------------------------------------------------------


def test_partial_refunds_racing_never_exceed_what_was_paid(shop):
    checkout = paid_checkout(shop)  # 10,000 sats

    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: refund(shop, checkout["invoiceId"], amountSats=3000), range(8))
        )

    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 3 + [409] * 5, [a.text for a in answers]
    refused = next(a.json() for a in answers if a.status_code == 409)
    assert refused["error"] == "exceeds_refundable" and refused["refundableMsat"] == 1_000_000
    assert sum(r.amount_msat for r in Refund.objects.all()) == 9_000_000
    # A canceled refund frees its amount; the rest is refunded in full.
    first = next(a.json()["refundId"] for a in answers if a.status_code == 201)
    canceled = shop.call("POST", f"/api/refunds/{first}/cancel")
    assert canceled.status_code == 200 and canceled.json()["state"] == "failed"
    rest = refund(shop, checkout["invoiceId"])
    assert rest.status_code == 201 and rest.json()["amountSats"] == 4000
    assert [e["refundId"] for e in events("refund.failed")] == [first]
    listed = shop.call("GET", f"/api/checkout/invoices/{checkout['invoiceId']}/refunds").json()
    assert listed["total"] == 4


def test_a_fiat_refund_converts_at_the_rate_the_merchant_chooses(shop, settings):
    settings.FIXED_RATES = "USD=100000,EUR=92000"
    checkout = paid_checkout(shop, amount="20.00", currency="USD")  # 20,000 sats
    settings.FIXED_RATES = "USD=50000,EUR=46000"  # bitcoin halved since

    at_payment = refund(shop, checkout["invoiceId"], amount="5.00", currency="USD").json()
    today = refund(shop, checkout["invoiceId"], amount="5.00", currency="USD", rate="current")

    assert at_payment["amountSats"] == 5000 and at_payment["rateChoice"] == "payment"
    assert at_payment["rate"] == "100000" and at_payment["amount"] == "5.00"
    assert today.status_code == 201, today.text
    assert today.json()["amountSats"] == 10_000 and today.json()["rateChoice"] == "current"
    too_much = refund(shop, checkout["invoiceId"], amount="10.00", currency="USD", rate="current")
    assert too_much.status_code == 409 and too_much.json()["error"] == "exceeds_refundable"
    no_rate = refund(shop, checkout["invoiceId"], amount="1.00", currency="EUR")
    assert no_rate.status_code == 422 and no_rate.json()["error"] == "no_payment_rate"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"amountSats": 0}, "amountSats"),
        ({"amountSats": "100"}, "amountSats"),
        ({"amountSats": 1.5}, "amountSats"),
        ({"amount": "5.00"}, "currency"),
        ({"amount": 5, "currency": "USD"}, "amount"),
        ({"amountSats": 5, "amount": "5", "currency": "SAT"}, "body"),
        ({"rate": "yesterday", "amount": "1.00", "currency": "USD"}, "rate"),
        ({"refundAddress": "not an address"}, "refundAddress"),
        ({"refundAddress": "lnurl1qqqqqq"}, "refundAddress"),
        ({"refundAddress": "alice@ftp://x"}, "refundAddress"),
        ({"amountsats": 5}, "amountsats"),
    ],
)
def test_bad_refund_requests_are_4xx_naming_the_field(shop, body, field):
    checkout = paid_checkout(shop)
    answer = refund(shop, checkout["invoiceId"], **body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["errors"]
    assert Refund.objects.count() == 0


def test_only_your_paid_checkouts_are_refunded_and_only_with_an_admin_key(shop, base):
    other = Shop(base, "Someone Else")
    theirs = paid_checkout(other)
    assert refund(shop, theirs["invoiceId"]).status_code == 404
    unpaid = shop.call("POST", "/api/checkout/invoices", json={"amount": "5", "currency": "SAT"})
    answer = refund(shop, unpaid.json()["invoiceId"])
    assert answer.status_code == 409 and answer.json()["error"] == "not_paid"
    mine = paid_checkout(shop)
    assert refund(shop, mine["invoiceId"], key="invoice").status_code == 403
    made = refund(shop, mine["invoiceId"], amountSats=10).json()
    assert other.call("GET", f"/api/refunds/{made['refundId']}").status_code == 404
    assert other.call("POST", f"/api/refunds/{made['refundId']}/cancel").status_code == 404
    assert other.call("GET", "/api/refunds").json()["total"] == 0


def test_a_refund_the_wallet_cannot_cover_is_refused_before_anything_is_made(shop, base):
    checkout = paid_checkout(shop)
    spent = shop.pay(remote_invoice(9_500))  # the merchant spent most of it
    assert spent.status_code == 201, spent.text
    answer = refund(shop, checkout["invoiceId"])
    assert answer.status_code == 409 and answer.json()["error"] == "insufficient_balance"
    assert Refund.objects.count() == 0


def test_a_paid_l402_purchase_and_a_wallet_payment_are_refunded_by_payment_hash(shop):
    from l402.services.challenges import create_merchant_challenge

    challenge = create_merchant_challenge(shop.merchant, "/reports/1", 300)
    paid_from_outside(challenge.invoice.bolt11)
    answer = shop.call(
        "POST",
        "/api/refunds",
        json={"paymentHash": challenge.invoice.payment_hash, "amountSats": 100},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["source"] == "l402" and answer.json()["amountSats"] == 100
    assert answer.json()["sourceId"] == challenge.invoice.payment_hash
    made = shop.receive(300, memo="a donation")  # any payment into the wallet
    paid_from_outside(made["payment_request"])
    wallet = shop.call("POST", "/api/refunds", json={"paymentHash": made["payment_hash"]})
    assert wallet.status_code == 201 and wallet.json()["source"] == "wallet"
    assert wallet.json()["amountSats"] == 300
    neither = shop.call("POST", "/api/refunds", json={"amountSats": 100})
    assert neither.status_code == 400
    unknown = shop.call("POST", "/api/refunds", json={"paymentHash": "ab" * 32})
    assert unknown.status_code == 404


# --- Lightning addresses --------------------------------------------------------------------


class PayServer:
    """A Lightning address's LNURL-pay server (LUD-06/16) on loopback: its invoices come
    from the dev node as a payee elsewhere, committing to the metadata's hash."""

    metadata = json.dumps([["text/plain", "Alice's wallet"], ["text/identifier", "alice@x"]])

    def __init__(self, lie_about_amount=False, min_msat=1000):
        self.calls: list[dict] = []
        self.lie_about_amount = lie_about_amount
        self.min_msat = min_msat
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                server.calls.append({"path": url.path, **query})
                if url.path == "/.well-known/lnurlp/alice":
                    body = {
                        "tag": "payRequest",
                        "callback": f"http://127.0.0.1:{server.port}/cb/alice",
                        "minSendable": server.min_msat,
                        "maxSendable": 100_000_000,
                        "metadata": server.metadata,
                        "commentAllowed": 100,
                    }
                elif url.path == "/cb/alice":
                    amount = int(query["amount"]) + (1000 if server.lie_about_amount else 0)
                    digest = hashlib.sha256(server.metadata.encode()).hexdigest()
                    made = get_backend().create_invoice(amount, "", 600, description_hash=digest)
                    body = {"pr": made.bolt11, "routes": []}
                else:
                    body = {"status": "ERROR", "reason": "no such user"}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def address(self):
        return f"alice@127.0.0.1:{self.port}"

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def pay_server():
    server = PayServer()
    yield server
    server.close()


def test_a_refund_to_the_checkouts_lightning_address_is_paid_by_itself(shop, pay_server):
    checkout = paid_checkout(shop, refundAddress=pay_server.address)
    assert checkout["refundAddress"] == pay_server.address
    before = shop.balance_msat()

    made = refund(shop, checkout["invoiceId"], amountSats=1234, reason="damaged")

    assert made.status_code == 201, made.text
    body = made.json()
    assert body["state"] == "completed" and body["claimUrl"] is None
    callback = [c for c in pay_server.calls if c["path"] == "/cb/alice"]
    assert len(callback) == 1 and callback[0]["amount"] == "1234000"
    assert body["refundId"] in callback[0]["comment"]
    assert DevNodeInvoice.objects.get(payment_hash=body["payoutPaymentHash"]).state == "SETTLED"
    assert shop.balance_msat() == before - 1_234_000 - 0  # dev node routes without fees
    assert [e["state"] for e in events("refund.completed")] == ["completed"]
    assert_ledger_consistent(shop)


def test_an_address_whose_invoice_is_wrong_or_out_of_bounds_is_not_paid(shop, base):
    liar = PayServer(lie_about_amount=True)
    picky = PayServer(min_msat=5_000_000)
    try:
        checkout = paid_checkout(shop)
        wrong = refund(shop, checkout["invoiceId"], amountSats=100, refundAddress=liar.address)
        bounds = refund(shop, checkout["invoiceId"], amountSats=100, refundAddress=picky.address)
    finally:
        liar.close()
        picky.close()
    assert wrong.json()["state"] == "failed"
    assert "101000 msat, not 100000" in wrong.json()["failureReason"]
    assert bounds.json()["state"] == "failed"
    assert "takes 5000000 to 100000000 msat" in bounds.json()["failureReason"]
    assert Payment.objects.filter(direction="out").count() == 0
    assert len(events("refund.failed")) == 2
    # A failed refund frees its amount.
    assert refund(shop, checkout["invoiceId"]).json()["amountSats"] == 10_000


def test_a_private_address_is_refused_unless_the_operator_allows_it(shop, settings, pay_server):
    settings.REFUNDS_ALLOW_PRIVATE_TARGETS = False
    checkout = paid_checkout(shop)
    answer = refund(shop, checkout["invoiceId"], refundAddress=pay_server.address)
    assert answer.json()["state"] == "failed"
    assert "private, loopback" in answer.json()["failureReason"]
    assert pay_server.calls == []  # never contacted


def test_an_address_that_is_down_is_retried_by_the_sweep(shop, settings):
    from refunds import services

    down = PayServer()
    address = down.address
    down.close()
    down.httpd.server_close()
    settings.REFUNDS_RETRY_SECONDS = 0
    settings.REFUNDS_SWEEP_SECONDS = 0
    checkout = paid_checkout(shop)
    answer = refund(shop, checkout["invoiceId"], amountSats=500, refundAddress=address).json()
    assert answer["state"] == "pending" and "will try again" in answer["failureReason"]
    for _ in range(settings.REFUNDS_ADDRESS_ATTEMPTS):
        services.sweep()
    final = Refund.objects.get(public_id=answer["refundId"])
    assert final.state == "failed" and final.attempts == settings.REFUNDS_ADDRESS_ATTEMPTS


# --- the admin ------------------------------------------------------------------------------


def test_staff_refund_a_paid_checkout_from_its_admin_page_and_only_their_own(shop, base):
    from django.test import Client

    from checkout.staff import create_merchant_user

    checkout = paid_checkout(shop)
    theirs = paid_checkout(Shop(base, "Someone Else"))
    client = Client()
    client.force_login(create_merchant_user("alice", shop.merchant, "a long passphrase 42"))
    detail = client.get(
        f"/admin/checkout/checkoutinvoice/{checkout_pk(checkout)}/change/"
    ).content.decode()
    form_url = f"/admin/refunds/refund/payment/{checkout['paymentHash']}/"
    assert form_url in detail  # the Refund button

    made = client.post(form_url, {"amount_sats": "700", "reason": "one cup short"})

    assert made.status_code == 302
    refund_row = Refund.objects.get()
    assert (refund_row.amount_msat, refund_row.state) == (700_000, "claimable")
    page = client.get(made["Location"]).content.decode()
    assert refund_row.claim_token in page and "one cup short" in page
    too_much = client.post(form_url, {"amount_sats": "9999"})
    assert "exceeds what is left to refund" in too_much.content.decode()
    # Another merchant's checkout, by URL guessing: nothing.
    theirs_url = f"/admin/refunds/refund/payment/{theirs['paymentHash']}/"
    assert client.get(theirs_url).status_code == 403
    assert client.post(theirs_url).status_code == 403
    assert Refund.objects.count() == 1
    # An L402 purchase's page has the button too, and it refunds the same way.
    from l402.models import L402Challenge
    from l402.services.challenges import create_merchant_challenge

    challenge = create_merchant_challenge(shop.merchant, "/reports/9", 50)
    paid_from_outside(challenge.invoice.bolt11)
    pk = L402Challenge.objects.get(invoice=challenge.invoice).pk
    page = client.get(f"/admin/l402/l402challenge/{pk}/change/").content.decode()
    l402_url = f"/admin/refunds/refund/payment/{challenge.invoice.payment_hash}/"
    assert l402_url in page
    assert client.post(l402_url, {"reason": "timed out"}).status_code == 302
    assert Refund.objects.get(source="l402").amount_msat == 50_000


def checkout_pk(body) -> int:
    from checkout.models import CheckoutInvoice

    return CheckoutInvoice.objects.get(public_id=body["invoiceId"]).pk


def test_the_lnurl_withdraw_callback_refuses_what_it_cannot_pay_with_the_lud_error_shape(shop):
    checkout = paid_checkout(shop)
    body = refund(shop, checkout["invoiceId"], amountSats=500).json()
    token = body["claimUrl"].rsplit("/", 1)[-1]
    callback = f"/lnurlw/{token}/callback"
    for params, status, reason in [
        ({"pr": remote_invoice(500)}, 400, "k1 does not match"),
        ({"k1": token}, 400, "pr (the invoice to pay) is missing"),
        ({"k1": token, "pr": "lnbc1garbage"}, 400, "not a Lightning invoice"),
        ({"k1": token, "pr": remote_invoice(501)}, 400, "exactly 500 sats"),
    ]:
        answer = shop.http.get(callback, params=params)
        assert answer.status_code == status, answer.text
        assert answer.json()["status"] == "ERROR" and reason in answer.json()["reason"]
    assert shop.http.get("/lnurlw/" + "0" * 64).json()["status"] == "ERROR"
    assert Refund.objects.get(public_id=body["refundId"]).state == "claimable"
