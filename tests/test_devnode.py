"""The dev node: real BOLT11 invoices, read by an independent decoder (Core Lightning's
pyln-proto), and paying its own invoices through the command and the dev API."""

import hashlib
import time

import pytest
from django.core.management import CommandError, call_command
from pyln.proto.invoice import Invoice as PylnInvoice

from lightning import services
from lightning.backends import get_backend
from lightning.backends.base import PaymentFailed, PaymentNotFound
from lightning.models import DevNodeInvoice, Invoice

pytestmark = pytest.mark.django_db


def test_invoice_decodes_with_independent_decoder():
    before = int(time.time())
    invoice = services.create_invoice(123_456_000, "Two espressos ☕", expiry_seconds=900)
    decoded = PylnInvoice.decode(invoice.bolt11)  # verifies the signature, recovers the payee
    assert invoice.bolt11.startswith("lnbcrt")
    assert decoded.currency == "bcrt"
    assert int(decoded.amount * 10**11) == 123_456_000  # BTC -> msat
    assert decoded.paymenthash.hex() == invoice.payment_hash
    tags = dict(decoded.tags)
    assert tags["d"] == "Two espressos ☕"
    assert tags["x"] == 900
    assert before <= decoded.date <= int(time.time())
    payee = decoded.pubkey.format(compressed=True).hex()
    assert payee == get_backend().get_info().pubkey
    assert (invoice.expires_at - invoice.created_at).total_seconds() == 900


def test_node_key_is_kept_in_the_data_folder(settings):
    key_file = settings.DATA_DIR / "devnode.key"
    pubkey = get_backend().get_info().pubkey
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    from lightning.backends import reset_backend

    reset_backend()
    assert get_backend().get_info().pubkey == pubkey


def test_pay_settles_with_the_preimage_and_a_growing_settle_index():
    first = services.create_invoice(1000, "a")
    second = services.create_invoice(2000, "b")
    backend = get_backend()
    backend.pay_invoice(second.bolt11)
    p1 = backend.pay_invoice(first.bolt11)
    assert hashlib.sha256(bytes.fromhex(p1.preimage)).hexdigest() == first.payment_hash
    i1, i2 = backend.lookup_invoice(first.payment_hash), backend.lookup_invoice(second.payment_hash)
    assert (i1.state, i2.state) == ("SETTLED", "SETTLED")
    assert i1.settle_index == i2.settle_index + 1
    assert [s.payment_hash for s in backend.subscribe_settlements(0).next_batch(0.1)] == [
        second.payment_hash,
        first.payment_hash,
    ]


def test_pay_refuses_paid_expired_and_foreign_invoices():
    backend = get_backend()
    invoice = services.create_invoice(5000, "once")
    backend.pay_invoice(invoice.bolt11)
    with pytest.raises(PaymentFailed, match="already paid"):
        backend.pay_invoice(invoice.bolt11)
    expired = services.create_invoice(5000, "late", expiry_seconds=1)
    DevNodeInvoice.objects.filter(payment_hash=expired.payment_hash).update(
        expires_at=expired.created_at
    )
    with pytest.raises(PaymentFailed, match="expired"):
        backend.pay_invoice(expired.bolt11)
    with pytest.raises(PaymentFailed, match="not a valid BOLT11"):
        backend.pay_invoice("lnbcrt1garbage")


def test_pay_verifies_an_altered_copy_of_its_own_invoice():
    """Its own invoices are recognised by their text; a copy with our payment hash but
    another byte is decoded and verified, and refused."""
    backend = get_backend()
    invoice = services.create_invoice(5000, "tampered")
    i = invoice.bolt11.index("1") + 100  # inside the tags, past the payment hash
    altered = (
        invoice.bolt11[:i] + ("q" if invoice.bolt11[i] != "q" else "p") + invoice.bolt11[i + 1 :]
    )
    with pytest.raises(PaymentFailed, match="not a valid BOLT11"):
        backend.pay_invoice(altered)
    assert backend.pay_invoice("lightning:" + invoice.bolt11.upper()).preimage


def test_hold_invoice_is_accepted_then_settled_by_the_preimage():
    preimage = bytes(range(32))
    payment_hash = hashlib.sha256(preimage).hexdigest()
    invoice = services.create_hold_invoice(payment_hash, 10_000, "held")
    backend = get_backend()
    assert backend.pay_invoice(invoice.bolt11).preimage == ""
    assert backend.lookup_invoice(payment_hash).state == "ACCEPTED"
    assert backend.subscribe_settlements(0).next_batch(0.05) == []  # not settled yet
    services.settle_hold_invoice(invoice, preimage.hex())
    settled = backend.lookup_invoice(payment_hash)
    assert settled.state == "SETTLED" and settled.preimage == preimage.hex()


def test_track_payment_follows_what_the_dev_node_paid():
    invoice = services.create_invoice(7_000, "tracked")
    with pytest.raises(PaymentNotFound):
        services.track_payment(invoice.payment_hash)  # not paid yet: never handed over

    payment = services.pay_invoice(invoice.bolt11, fee_limit_msat=0, timeout_seconds=5)
    assert payment.fee_msat == 0, "no route, no fee: a zero fee limit holds"

    status = services.track_payment(invoice.payment_hash)
    assert (status.state, status.preimage, status.amount_msat, status.fee_msat) == (
        "SUCCEEDED",
        payment.preimage,
        7_000,
        0,
    )
    assert hashlib.sha256(bytes.fromhex(status.preimage)).hexdigest() == invoice.payment_hash
    with pytest.raises(PaymentNotFound):
        services.track_payment("cd" * 32)


def test_track_payment_of_a_held_payment_is_in_flight_until_the_hold_ends():
    preimage = bytes(range(32))
    settled = services.create_hold_invoice(hashlib.sha256(preimage).hexdigest(), 9_000, "hold")
    canceled = services.create_hold_invoice("ef" * 32, 4_000, "hold, canceled")
    for invoice in (settled, canceled):
        services.pay_invoice(invoice.bolt11, fee_limit_msat=1_000, timeout_seconds=5)
        status = services.track_payment(invoice.payment_hash)
        assert (status.state, status.preimage) == ("IN_FLIGHT", "")

    services.settle_hold_invoice(settled, preimage.hex())
    services.cancel_hold_invoice(canceled)

    done = services.track_payment(settled.payment_hash)
    assert (done.state, done.preimage, done.fee_msat) == ("SUCCEEDED", preimage.hex(), 0)
    failed = services.track_payment(canceled.payment_hash)
    assert failed.state == "FAILED" and "canceled" in failed.failure


def test_cancel_hold_invoice():
    invoice = services.create_hold_invoice("ab" * 32, 10_000, "to cancel")
    assert services.cancel_hold_invoice(invoice) is True
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.CANCELED
    assert get_backend().lookup_invoice(invoice.payment_hash).state == "CANCELED"


def test_devnode_pay_command(capsys):
    invoice = services.create_invoice(3000, "cli")
    call_command("devnode_pay", invoice.bolt11)
    out = capsys.readouterr().out
    assert f"paymentHash {invoice.payment_hash}" in out
    assert get_backend().lookup_invoice(invoice.payment_hash).state == "SETTLED"
    with pytest.raises(CommandError, match="already paid"):
        call_command("devnode_pay", invoice.bolt11)


def test_dev_pay_api_in_dev_mode(client, settings):
    settings.DEV_MODE = True
    invoice = services.create_invoice(4000, "api")
    response = client.post(
        "/api/dev/pay", {"bolt11": invoice.bolt11}, content_type="application/json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["paymentHash"] == invoice.payment_hash
    assert hashlib.sha256(bytes.fromhex(body["preimage"])).hexdigest() == invoice.payment_hash
    again = client.post("/api/dev/pay", {"bolt11": invoice.bolt11}, content_type="application/json")
    assert again.status_code == 409
    assert again["Content-Type"] == "application/problem+json"
    assert again.json()["error"] == "payment_failed"
    missing = client.post("/api/dev/pay", {}, content_type="application/json")
    assert missing.status_code == 400 and "bolt11" in missing.json()["errors"]


def test_dev_pay_api_is_404_outside_dev_mode(client, settings):
    settings.DEV_MODE = False
    invoice = services.create_invoice(4000, "api")
    response = client.post(
        "/api/dev/pay", {"bolt11": invoice.bolt11}, content_type="application/json"
    )
    assert response.status_code == 404
    assert get_backend().lookup_invoice(invoice.payment_hash).state == "OPEN"


def test_invoice_amount_rules():
    with pytest.raises(ValueError):
        services.create_invoice(0, "zero")
    with pytest.raises(ValueError):
        services.create_invoice(1500, "fractional sat")
    assert Invoice.objects.count() == 0
