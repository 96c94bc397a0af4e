"""Hold invoices through their whole life: open -> accepted -> paid | canceled, followed by a
real Watcher thread (its HoldTracker), on the dev node in the database and on the lnd
backend over real gRPC against the in-process simulated LND. A payer pays from outside
(the sim node's control endpoint, or the dev node's pay_invoice), the merchant settles or
cancels, blocks are mined until a held payment nears its HTLC expiry.

Every wait is on a condition with a generous deadline (a busy 2-core machine)."""

import hashlib
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from lightning import invoice_codec, reactions, services
from lightning.backends import get_backend, reset_backend
from lightning.backends.base import PaymentFailed
from lightning.backends.lnd import LndBackend
from lightning.models import DevNodeInvoice, Invoice, InvoiceTransition
from lightning.simnode import SimNode, control_mine, control_pay
from lightning.watcher import Watcher

from .processes import wait_for

PURPOSE = "test-hold"
WAIT = 30.0  # generous: a deadline, never a measured time
CLTV = invoice_codec.MIN_FINAL_CLTV_EXPIRY


def new_preimage() -> tuple[str, str]:
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


@pytest.fixture
def seen():
    """What a reaction to PURPOSE invoices sees, one tuple per transition it ran for."""
    changes = []

    def record(invoice, from_state, to_state):
        changes.append(
            (
                invoice.memo,
                from_state,
                to_state,
                invoice.state,
                invoice.canceled_reason,
                invoice.htlc_expiry_height,
                invoice.accepted_at is not None,
            )
        )

    reactions.reaction("test.hold_lifecycle", purpose=PURPOSE)(record)
    yield changes
    reactions.unregister("test.hold_lifecycle")


@pytest.fixture
def watcher(settings):
    """A real watcher thread, stopped (and its hold streams with it) after the test."""
    settings.WATCHER_LEASE_SECONDS = 3
    settings.HOLD_INVOICE_EXPIRY_CHECK_SECONDS = 0.2
    running = []

    def start():
        w = Watcher(holder=f"hold-test-{len(running)}")
        thread = threading.Thread(target=w.run, daemon=True)
        thread.start()
        running.append((w, thread))
        return w

    yield start
    for w, thread in running:
        w.stop()
        thread.join(WAIT)
        assert not thread.is_alive()
    wait_for(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("hold-")],
        WAIT,
        "the hold streams to end with the watcher",
    )


def state_of(invoice) -> str:
    return Invoice.objects.get(pk=invoice.pk).state


def wait_state(invoice, state: str) -> Invoice:
    wait_for(lambda: state_of(invoice) == state, WAIT, f"{invoice.memo} to be {state}")
    return Invoice.objects.get(pk=invoice.pk)


def followed(w: Watcher, invoice) -> None:
    """Wait until the watcher's tracker has a stream for the invoice: what happens next is
    seen by that stream (the watcher's start-up reconciliation is over)."""
    wait_for(
        lambda: w.hold_tracker is not None and invoice.payment_hash in w.hold_tracker.following(),
        WAIT,
        f"a stream for {invoice.memo}",
    )


def transitions(invoice) -> list[tuple[str, str]]:
    return list(
        InvoiceTransition.objects.filter(invoice=invoice).values_list("from_state", "to_state")
    )


# --- the dev node ---------------------------------------------------------------------------


def node_height() -> int:
    return get_backend().get_info().block_height


@pytest.mark.django_db(transaction=True)
def test_devnode_hold_invoice_is_accepted_then_paid(watcher, seen):
    w = watcher()
    preimage, payment_hash = new_preimage()
    invoice = services.create_hold_invoice(payment_hash, 21_000, "held", purpose=PURPOSE)
    followed(w, invoice)
    height = node_height()

    get_backend().pay_invoice(invoice.bolt11)  # the payer's wallet: the node holds it

    accepted = wait_state(invoice, "accepted")
    assert accepted.htlc_expiry_height == height + CLTV
    assert accepted.accepted_at is not None and accepted.paid_at is None
    services.settle_hold_invoice(accepted, preimage)
    paid = wait_state(invoice, "paid")
    assert (paid.preimage, paid.amount_paid_msat) == (preimage, 21_000)
    assert transitions(invoice) == [("open", "accepted"), ("accepted", "paid")]
    wait_for(lambda: len(seen) == 2, WAIT, "both reactions")
    assert seen == [
        ("held", "open", "accepted", "accepted", "", height + CLTV, True),
        ("held", "accepted", "paid", "paid", "", height + CLTV, True),
    ]


@pytest.mark.django_db(transaction=True)
def test_devnode_accepted_hold_invoice_canceled_by_the_merchant(watcher, seen):
    w = watcher()
    _, payment_hash = new_preimage()
    invoice = services.create_hold_invoice(payment_hash, 5_000, "to cancel", purpose=PURPOSE)
    followed(w, invoice)
    get_backend().pay_invoice(invoice.bolt11)
    accepted = wait_state(invoice, "accepted")

    assert services.cancel_hold_invoice(accepted) is True
    assert services.cancel_hold_invoice(accepted) is False  # once

    canceled = Invoice.objects.get(pk=invoice.pk)
    assert (canceled.state, canceled.canceled_reason) == ("canceled", "merchant")
    assert DevNodeInvoice.objects.get(payment_hash=payment_hash).state == "CANCELED"
    with pytest.raises(PaymentFailed, match="invoice was canceled"):
        get_backend().pay_invoice(invoice.bolt11)
    wait_for(
        lambda: invoice.payment_hash not in w.hold_tracker.following(), WAIT, "the stream to end"
    )
    assert transitions(invoice) == [("open", "accepted"), ("accepted", "canceled")]
    assert [(s[1], s[2], s[4]) for s in seen] == [
        ("open", "accepted", ""),
        ("accepted", "canceled", "merchant"),
    ]


@pytest.mark.django_db(transaction=True)
def test_devnode_held_payment_near_its_htlc_expiry_is_canceled_and_the_payer_refunded(
    watcher, seen, settings
):
    w = watcher()
    preimage, payment_hash = new_preimage()
    invoice = services.create_hold_invoice(payment_hash, 8_000, "forgotten", purpose=PURPOSE)
    followed(w, invoice)
    get_backend().pay_invoice(invoice.bolt11)
    accepted = wait_state(invoice, "accepted")
    margin = settings.HOLD_INVOICE_CANCEL_BLOCKS_BEFORE_EXPIRY
    assert margin > 12

    out = StringIO()
    call_command("devnode_mine", str(CLTV - margin - 1), stdout=out)
    assert f"block height {accepted.htlc_expiry_height - margin - 1}" in out.getvalue()
    assert services.cancel_expiring_hold_invoices() == 0  # one block short of the margin
    assert state_of(invoice) == "accepted"

    call_command("devnode_mine", "1", stdout=out)
    canceled = wait_state(invoice, "canceled")

    assert canceled.canceled_reason == "htlc_expiry"
    assert DevNodeInvoice.objects.get(payment_hash=payment_hash).state == "CANCELED"
    with pytest.raises(PaymentFailed, match="not ACCEPTED"):
        services.settle_hold_invoice(canceled, preimage)
    with pytest.raises(PaymentFailed, match="invoice was canceled"):
        get_backend().pay_invoice(invoice.bolt11)  # the payer's HTLC was failed back
    wait_for(lambda: len(seen) == 2, WAIT, "both reactions")
    assert [(s[1], s[2], s[3], s[4]) for s in seen] == [
        ("open", "accepted", "accepted", ""),
        ("accepted", "canceled", "canceled", "htlc_expiry"),
    ]


@pytest.mark.django_db(transaction=True)
def test_devnode_cancels_a_held_payment_itself_when_we_leave_it_too_late(watcher, seen, settings):
    """With a margin below the node's own (12 blocks), the node fails the HTLC first: the
    tracker sees the node's CANCELED and records reason "node"."""
    settings.HOLD_INVOICE_CANCEL_BLOCKS_BEFORE_EXPIRY = 0
    w = watcher()
    _, payment_hash = new_preimage()
    invoice = services.create_hold_invoice(payment_hash, 3_000, "late", purpose=PURPOSE)
    followed(w, invoice)
    get_backend().pay_invoice(invoice.bolt11)
    wait_state(invoice, "accepted")

    assert get_backend().mine(CLTV - 12) == node_height()

    assert wait_state(invoice, "canceled").canceled_reason == "node"
    assert [(s[1], s[2], s[4]) for s in seen] == [
        ("open", "accepted", ""),
        ("accepted", "canceled", "node"),
    ]


@pytest.mark.django_db(transaction=True)
def test_beyond_the_stream_limit_the_reconciliation_follows_hold_invoices(watcher, settings):
    settings.HOLD_INVOICE_MAX_STREAMS = 1
    older = services.create_hold_invoice(new_preimage()[1], 1_000, "older")
    w = watcher()
    newer = services.create_hold_invoice(new_preimage()[1], 1_000, "newer")
    wait_for(
        lambda: w.hold_tracker is not None and w.hold_tracker.following() == {newer.payment_hash},
        WAIT,
        "a stream for the newest hold invoice only",
    )
    get_backend().pay_invoice(older.bolt11)

    counts = services.reconcile_invoices()  # what beat runs every WATCHER_RECONCILE_SECONDS

    assert counts["accepted"] in (0, 1)  # 0 only if the tracker's stream saw it first
    assert state_of(older) == "accepted"
    assert w.hold_tracker.following() == {newer.payment_hash}


@pytest.mark.django_db
def test_reconcile_follows_a_hold_invoice_through_its_states_without_a_watcher():
    preimage, payment_hash = new_preimage()
    invoice = services.create_hold_invoice(payment_hash, 2_000, "reconciled", expiry_seconds=60)
    get_backend().pay_invoice(invoice.bolt11)
    assert services.reconcile_invoices()["accepted"] == 1
    assert services.reconcile_invoices()["accepted"] == 0
    # An accepted invoice's payment is held: past its expiry it is not expired.
    assert services.expire_invoices(now=timezone.now() + timedelta(hours=1)) == 0
    get_backend().settle_hold_invoice(preimage)
    assert services.reconcile_invoices()["paid"] == 1
    paid = Invoice.objects.get(pk=invoice.pk)
    assert (paid.state, paid.preimage) == ("paid", preimage)
    assert transitions(invoice) == [("open", "accepted"), ("accepted", "paid")]


@pytest.mark.django_db
def test_an_acceptance_seen_after_our_expiry_sweep_still_counts():
    """The node held the payment before the invoice expired, but our sweep ran first."""
    invoice = services.create_hold_invoice(new_preimage()[1], 2_000, "raced", expiry_seconds=60)
    get_backend().pay_invoice(invoice.bolt11)
    assert services.expire_invoices(now=timezone.now() + timedelta(minutes=5)) == 1
    assert services.refresh_from_node(Invoice.objects.get(pk=invoice.pk)).state == "expired"
    services.apply_invoice_update(get_backend().lookup_invoice(invoice.payment_hash))
    assert transitions(invoice) == [("open", "expired"), ("expired", "accepted")]


@pytest.mark.django_db(transaction=True)
def test_a_failing_hold_stream_never_stops_settlements_and_recovers(watcher, monkeypatch):
    w = watcher()
    invoice = services.create_hold_invoice(new_preimage()[1], 4_000, "flaky")
    followed(w, invoice)
    real = services.apply_invoice_update
    failures = []

    def broken(update):
        failures.append(update.state)
        raise RuntimeError("a bug in applying an update")

    monkeypatch.setattr(services, "apply_invoice_update", broken)
    get_backend().pay_invoice(invoice.bolt11)
    wait_for(lambda: "ACCEPTED" in failures, WAIT, "the stream to fail on ACCEPTED")
    regular = services.create_invoice(1_000, "regular")
    get_backend().pay_invoice(regular.bolt11)
    wait_state(regular, "paid")  # the settlement stream goes on
    monkeypatch.setattr(services, "apply_invoice_update", real)
    wait_state(invoice, "accepted")  # the stream reopened, with the current state first


# --- the lnd backend against the simulated LND, over gRPC ------------------------------------


@pytest.fixture
def sim(tmp_path, settings):
    """A sim node, and the gateway's lnd backend pointed at it."""
    node = SimNode(tmp_path / "lnd").start()
    settings.LIGHTNING_BACKEND = "lnd"
    settings.LND_GRPC_HOST = node.address
    settings.LND_TLS_CERT = str(node.cert_path)
    settings.LND_MACAROON = str(node.macaroon_path)
    settings.LND_TIMEOUT_SECONDS = 10
    reset_backend()
    state = {"node": node}
    yield state
    reset_backend()
    state["node"].stop()


def paid_remotely(node: SimNode, bolt11: str) -> dict:
    status, answer = control_pay(node.directory, bolt11)
    assert status == 200, answer
    return answer


@pytest.mark.django_db(transaction=True)
def test_lnd_hold_invoice_is_accepted_then_paid(sim, watcher, seen):
    node = sim["node"]
    w = watcher()
    preimage, payment_hash = new_preimage()
    invoice = services.create_hold_invoice(payment_hash, 50_000, "held", purpose=PURPOSE)
    assert invoice.backend == "lnd"
    followed(w, invoice)
    height = get_backend().get_info().block_height
    assert height == 100  # a new sim node's chain

    assert paid_remotely(node, invoice.bolt11)["state"] == "ACCEPTED"

    accepted = wait_state(invoice, "accepted")
    assert accepted.htlc_expiry_height == height + CLTV
    services.settle_hold_invoice(accepted, preimage)
    paid = wait_state(invoice, "paid")
    assert (paid.preimage, paid.amount_paid_msat, paid.settle_index) == (preimage, 50_000, 1)
    assert transitions(invoice) == [("open", "accepted"), ("accepted", "paid")]
    wait_for(lambda: len(seen) == 2, WAIT, "both reactions")
    assert seen == [
        ("held", "open", "accepted", "accepted", "", height + CLTV, True),
        ("held", "accepted", "paid", "paid", "", height + CLTV, True),
    ]


@pytest.mark.django_db(transaction=True)
def test_lnd_hold_invoice_canceled_open_and_accepted(sim, watcher, seen):
    node = sim["node"]
    w = watcher()
    never_paid = services.create_hold_invoice(new_preimage()[1], 1_000, "unpaid", purpose=PURPOSE)
    held = services.create_hold_invoice(new_preimage()[1], 2_000, "held", purpose=PURPOSE)
    followed(w, held)
    paid_remotely(node, held.bolt11)
    wait_state(held, "accepted")

    assert services.cancel_hold_invoice(never_paid) is True
    assert services.cancel_hold_invoice(Invoice.objects.get(pk=held.pk)) is True

    for invoice in (never_paid, held):
        canceled = Invoice.objects.get(pk=invoice.pk)
        assert (canceled.state, canceled.canceled_reason) == ("canceled", "merchant")
        assert get_backend().lookup_invoice(invoice.payment_hash).state == "CANCELED"
    assert control_pay(node.directory, held.bolt11) == (409, {"error": "invoice was canceled"})
    wait_for(lambda: not w.hold_tracker.following(), WAIT, "the streams to end")
    assert sorted((s[0], s[1], s[2], s[4]) for s in seen) == [
        ("held", "accepted", "canceled", "merchant"),
        ("held", "open", "accepted", ""),
        ("unpaid", "open", "canceled", "merchant"),
    ]


@pytest.mark.django_db(transaction=True)
def test_lnd_node_restart_while_a_payment_is_held_loses_nothing(sim, watcher, seen):
    node = sim["node"]
    w = watcher()
    preimage, payment_hash = new_preimage()
    held = services.create_hold_invoice(payment_hash, 9_000, "held", purpose=PURPOSE)
    later = services.create_hold_invoice(new_preimage()[1], 3_000, "later", purpose=PURPOSE)
    followed(w, held)
    paid_remotely(node, held.bolt11)
    wait_state(held, "accepted")

    node.stop()  # every stream breaks
    node = sim["node"] = SimNode(node.directory, port=node.port).start()

    regular = services.create_invoice(1_000, "after the restart")
    paid_remotely(node, regular.bolt11)
    wait_state(regular, "paid")  # the watcher streams again...
    followed(w, later)  # ...and follows the hold invoices again
    paid_remotely(node, later.bolt11)
    wait_state(later, "accepted")
    get_backend().settle_hold_invoice(preimage)  # on the node, behind the gateway's back
    assert wait_state(held, "paid").preimage == preimage
    wait_for(lambda: len(seen) == 3, WAIT, "three reactions")
    assert sorted((s[0], s[1], s[2]) for s in seen) == [
        ("held", "accepted", "paid"),
        ("held", "open", "accepted"),
        ("later", "open", "accepted"),
    ]


@pytest.mark.django_db(transaction=True)
def test_lnd_held_payment_near_its_htlc_expiry_is_canceled_and_the_payment_fails(
    sim, watcher, seen, settings
):
    node = sim["node"]
    w = watcher()
    preimage, payment_hash = new_preimage()
    invoice = services.create_hold_invoice(payment_hash, 7_000, "forgotten", purpose=PURPOSE)
    followed(w, invoice)
    payer = LndBackend(node.address, str(node.cert_path), str(node.macaroon_path), 10)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            payment = pool.submit(payer.pay_invoice, invoice.bolt11, 300)
            accepted = wait_state(invoice, "accepted")
            margin = settings.HOLD_INVOICE_CANCEL_BLOCKS_BEFORE_EXPIRY
            assert accepted.htlc_expiry_height == 100 + CLTV

            status, answer = control_mine(node.directory, CLTV - margin - 1)
            assert (status, answer) == (200, {"blockHeight": 100 + CLTV - margin - 1})
            assert services.cancel_expiring_hold_invoices() == 0
            assert not payment.done(), "the payment is held"
            control_mine(node.directory, 1)

            canceled = wait_state(invoice, "canceled")
            assert canceled.canceled_reason == "htlc_expiry"
            assert get_backend().lookup_invoice(payment_hash).state == "CANCELED"
            with pytest.raises(PaymentFailed):
                payment.result(timeout=WAIT)  # failed back to the payer, not stuck
    finally:
        payer.close()
    with pytest.raises(PaymentFailed, match="already canceled"):
        services.settle_hold_invoice(canceled, preimage)
    assert [(s[1], s[2], s[4]) for s in seen] == [
        ("open", "accepted", ""),
        ("accepted", "canceled", "htlc_expiry"),
    ]


def test_sim_chain_persists_and_the_node_fails_held_htlcs_itself_as_lnd_does(tmp_path):
    directory = tmp_path / "lnd"
    node = SimNode(directory).start()
    lnd = LndBackend(node.address, str(node.cert_path), str(node.macaroon_path), 10)
    try:
        assert lnd.get_info().block_height == 100
        preimage, payment_hash = new_preimage()
        invoice = lnd.create_hold_invoice(payment_hash, 1_000, "held", 600)
        assert invoice.htlc_expiry_height is None
        paid_remotely(node, invoice.bolt11)
        assert lnd.lookup_invoice(payment_hash).htlc_expiry_height == 100 + CLTV
        assert control_mine(node.directory, 5) == (200, {"blockHeight": 105})
        assert control_mine(node.directory, 0)[0] == 400

        node.stop()
        node = SimNode(directory, port=node.port).start()
        out = StringIO()
        call_command("simnode_mine", "--dir", str(directory), str(CLTV - 12 - 6), stdout=out)
        assert '"blockHeight": 167' in out.getvalue()
        assert lnd.lookup_invoice(payment_hash).state == "ACCEPTED"  # one block before
        control_mine(node.directory, 1)
        assert lnd.lookup_invoice(payment_hash).state == "CANCELED"
        assert lnd.get_info().block_height == 100 + CLTV - 12
        with pytest.raises(PaymentFailed, match="already canceled"):
            lnd.settle_hold_invoice(preimage)
    finally:
        lnd.close()
        node.stop()
