"""Hold invoices through the LNbits API, over real HTTP with the dev node: the payer's money
is held until the merchant settles with the preimage (credited then, not before) or cancels
(the payer gets it back); each step is announced once."""

import hashlib
import secrets

import pytest

from lightning import services as lightning_services
from lightning.backends import get_backend
from lightning.models import DevNodeInvoice, Invoice
from webhooks.models import WebhookDelivery, WebhookEvent

from .test_wallets_api import Shop, assert_ledger_consistent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(live_server, settings):
    settings.LIGHTNING_BACKEND = "devnode"
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    shop = Shop(live_server.url, "Escrow Shop")
    shop.call("POST", "/api/webhooks", json={"url": "http://127.0.0.1:9/all", "events": ["*"]})
    return shop


def held(shop, sats=3000):
    """A hold invoice paid by a wallet elsewhere, its payment held; and its preimage."""
    preimage = secrets.token_bytes(32)
    payment_hash = hashlib.sha256(preimage).hexdigest()
    created = shop.receive(
        sats, memo="escrow", payment_hash=payment_hash, webhook="http://127.0.0.1:9/mine"
    )
    assert created["payment_hash"] == payment_hash
    get_backend().pay_invoice(created["bolt11"])  # the payer's HTLC arrives and is held
    lightning_services.refresh_from_node(Invoice.objects.get(payment_hash=payment_hash))
    return created["checking_id"], preimage.hex()


def events(shop):
    return list(
        WebhookEvent.objects.filter(merchant=shop.merchant, type__startswith="payment.")
        .order_by("id")
        .values_list("type", flat=True)
    )


def test_a_held_payment_is_not_credited_until_settled(shop):
    checking_id, preimage = held(shop)
    status = shop.call("GET", f"/api/v1/payments/{checking_id}").json()
    assert status["paid"] is False and status["details"]["status"] == "pending"
    assert shop.balance_msat() == 0
    assert events(shop) == ["payment.held"]

    wrong = shop.call("PUT", f"/api/v1/payments/{checking_id}", json={"preimage": "00" * 32})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_preimage"
    answer = shop.call("PUT", f"/api/v1/payments/{checking_id}", json={"preimage": preimage})

    assert answer.status_code == 200 and answer.json() == {"detail": "Payment settled"}
    status = shop.call("GET", f"/api/v1/payments/{checking_id}").json()
    assert status["paid"] is True and status["preimage"] == preimage
    assert shop.balance_msat() == 3_000_000
    assert events(shop) == ["payment.held", "payment.completed"]
    # The webhook given at creation hears of the payment once, signed like any delivery.
    mine = WebhookDelivery.objects.filter(url="http://127.0.0.1:9/mine")
    assert [d.event.type for d in mine] == ["payment.completed"]
    assert_ledger_consistent(shop)


def test_lnbits_1x_settle_by_preimage(shop):
    checking_id, preimage = held(shop)
    answer = shop.call("POST", "/api/v1/payments/settle", json={"preimage": preimage})
    assert answer.status_code == 200
    assert DevNodeInvoice.objects.get(payment_hash=checking_id).state == "SETTLED"
    assert shop.balance_msat() == 3_000_000


@pytest.mark.parametrize("how", ["DELETE", "POST /cancel"])
def test_canceling_gives_the_payer_the_money_back(shop, how):
    checking_id, _ = held(shop)
    if how == "DELETE":
        answer = shop.call("DELETE", f"/api/v1/payments/{checking_id}")
    else:
        answer = shop.call("POST", "/api/v1/payments/cancel", json={"payment_hash": checking_id})
    assert answer.status_code == 200 and answer.json() == {"detail": "Payment cancelled"}
    assert DevNodeInvoice.objects.get(payment_hash=checking_id).state == "CANCELED"
    details = shop.call("GET", f"/api/v1/payments/{checking_id}").json()["details"]
    assert details["status"] == "failed" and details["failure_reason"] == "canceled by the merchant"
    assert shop.balance_msat() == 0
    assert events(shop) == ["payment.held", "payment.canceled"]
    again = shop.call("DELETE", f"/api/v1/payments/{checking_id}")
    assert again.status_code == 409


def test_a_held_payment_near_its_htlc_expiry_is_canceled_and_the_merchant_told(shop, settings):
    checking_id, _ = held(shop)
    invoice = Invoice.objects.get(payment_hash=checking_id)
    margin = settings.HOLD_INVOICE_CANCEL_BLOCKS_BEFORE_EXPIRY
    get_backend().mine(invoice.htlc_expiry_height - margin - get_backend().get_info().block_height)

    lightning_services.cancel_expiring_hold_invoices()

    details = shop.call("GET", f"/api/v1/payments/{checking_id}").json()["details"]
    assert details["status"] == "failed"
    assert details["failure_reason"].startswith("canceled before its HTLC expiry")
    assert events(shop) == ["payment.held", "payment.canceled"]


def test_only_the_admin_key_settles_and_only_held_payments_settle(shop):
    preimage = secrets.token_bytes(32)
    payment_hash = hashlib.sha256(preimage).hexdigest()
    shop.receive(100, payment_hash=payment_hash)
    path = f"/api/v1/payments/{payment_hash}"
    body = {"preimage": preimage.hex()}
    assert shop.call("PUT", path, key="invoice", json=body).status_code == 403
    not_held = shop.call("PUT", path, json=body)
    assert not_held.status_code == 409 and not_held.json()["error"] == "not_held"
    regular = shop.receive(100)
    answer = shop.call("DELETE", f"/api/v1/payments/{regular['checking_id']}")
    assert answer.status_code == 400 and answer.json()["error"] == "not_a_hold_invoice"
