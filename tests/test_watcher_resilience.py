"""Nothing stops payments from being recorded: a reaction (another app's side effect) that
raises, an unexpected error in the watcher, a failure that lasts. And /api/health tells
the truth about the watcher."""

import logging
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from lightning import reactions, services
from lightning.backends import get_backend
from lightning.models import Invoice, PendingReaction, WatcherState
from lightning.watcher import Watcher, acquire_lease

from .processes import wait_for

PURPOSE = "test"


@pytest.fixture
def broken_for(monkeypatch):
    """A reaction to test invoices that records each payment as a User row (a database
    write), and raises for the invoices whose memo is in the returned set, after writing
    a row that breaks a unique constraint (which aborts a PostgreSQL transaction unless the
    reaction runs in its own savepoint)."""
    broken = set()

    def record(invoice, from_state, to_state):
        if to_state != "paid":
            return
        if invoice.memo in broken:
            User.objects.create(username=f"half-{invoice.memo}")
            User.objects.create(username=f"half-{invoice.memo}")  # IntegrityError
        User.objects.create(username=f"paid-{invoice.memo}")

    monkeypatch.setitem(
        reactions._reactions, "test.record", reactions.Reaction("test.record", PURPOSE, record)
    )
    return broken


def node_key():
    return f"devnode:{get_backend().get_info().pubkey}"


def paid_memos():
    return set(Invoice.objects.filter(state="paid").values_list("memo", flat=True))


def recorded():
    return set(User.objects.values_list("username", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_failing_reaction_never_stops_a_payment_and_is_retried_until_it_succeeds(
    broken_for, caplog
):
    invoices = [services.create_invoice(1000, f"n{n}", purpose=PURPOSE) for n in range(3)]
    for invoice in invoices:
        get_backend().pay_invoice(invoice.bolt11)
    broken_for.add("n1")

    paid = services.apply_settlements(
        [get_backend().lookup_invoice(i.payment_hash) for i in invoices]
    )

    assert len(paid) == 3 and paid_memos() == {"n0", "n1", "n2"}
    assert recorded() == {"paid-n0", "paid-n2"}  # the failed reaction left nothing behind
    pending = PendingReaction.objects.get()
    assert (pending.invoice_id, pending.name, pending.to_state) == (
        invoices[1].pk,
        "test.record",
        "paid",
    )
    assert "IntegrityError" in pending.last_error
    assert invoices[1].payment_hash in caplog.text  # logged with the invoice

    # Retried by beat: still failing, it waits longer; fixed, it runs exactly once.
    PendingReaction.objects.update(next_attempt_at=timezone.now())
    assert reactions.retry_pending_reactions() == {"done": 0, "failed": 1}
    pending.refresh_from_db()
    assert pending.attempts == 2 and pending.next_attempt_at > timezone.now()
    assert reactions.retry_pending_reactions() == {"done": 0, "failed": 0}  # not due yet
    broken_for.clear()
    PendingReaction.objects.update(next_attempt_at=timezone.now())
    assert reactions.retry_pending_reactions() == {"done": 1, "failed": 0}
    assert recorded() == {"paid-n0", "paid-n1", "paid-n2"}
    assert not PendingReaction.objects.exists()


def start_watcher(holder):
    watcher = Watcher(holder=holder)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    return watcher, thread


@pytest.mark.django_db(transaction=True)
def test_the_watcher_keeps_streaming_past_a_failing_reaction_and_health_says_so(
    broken_for, client, settings, caplog
):
    settings.WATCHER_LEASE_SECONDS = 3
    broken_for.add("bad")
    watcher, thread = start_watcher("resilient")
    try:
        wait_for(
            lambda: WatcherState.objects.filter(lease_holder="resilient").exists(), 10, "lease"
        )
        for memo in ("a", "bad", "b"):  # likely one batch: the others must not roll back
            get_backend().pay_invoice(services.create_invoice(1000, memo, purpose=PURPOSE).bolt11)
        wait_for(lambda: paid_memos() == {"a", "bad", "b"}, 10, "all three to be paid")
        get_backend().pay_invoice(services.create_invoice(1000, "later", purpose=PURPOSE).bolt11)
        wait_for(lambda: "later" in paid_memos(), 10, "the watcher to keep streaming")
        assert recorded() == {"paid-a", "paid-b", "paid-later"}
        body = client.get("/api/health").json()
        assert body["status"] == "ok"
        assert body["watcher"]["settleIndex"] == 4
        assert body["watcher"]["pendingReactions"] == 1
        assert 0 <= body["watcher"]["heartbeatAgeSeconds"] < settings.WATCHER_HEALTH_MAX_AGE_SECONDS
        assert thread.is_alive()
    finally:
        watcher.stop()
        thread.join(10)
    assert "reaction test.record to invoice" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_watcher_survives_an_unexpected_error_and_logs_it(monkeypatch, settings, caplog):
    settings.WATCHER_LEASE_SECONDS = 3
    real_apply = services.apply_settlements
    failures = []

    def apply_but_fail_once(batch, **kwargs):
        if not failures:
            failures.append(batch)
            raise RuntimeError("a bug in the payment path")
        return real_apply(batch, **kwargs)

    monkeypatch.setattr(services, "apply_settlements", apply_but_fail_once)
    invoice = services.create_invoice(5000, "survivor")
    watcher, thread = start_watcher("survivor")
    try:
        wait_for(lambda: WatcherState.objects.filter(lease_holder="survivor").exists(), 10, "lease")
        get_backend().pay_invoice(invoice.bolt11)
        wait_for(lambda: paid_memos() == {"survivor"}, 15, "the payment after the error")
        assert thread.is_alive()
    finally:
        watcher.stop()
        thread.join(10)
    assert failures and "a bug in the payment path" in caplog.text
    assert "unexpected error" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_lasting_failure_is_logged_again_at_intervals(settings, caplog, tmp_path):
    """A node that stays down: the first failure is logged, then reminders while it lasts."""
    from lightning.simnode import SimNode

    node = SimNode(tmp_path)  # only for a real certificate and macaroon
    node.start()
    node.stop()
    settings.LIGHTNING_BACKEND = "lnd"
    settings.LND_GRPC_HOST = "127.0.0.1:1"
    settings.LND_TLS_CERT = str(tmp_path / "tls.cert")
    settings.LND_MACAROON = str(tmp_path / "admin.macaroon")
    settings.LND_TIMEOUT_SECONDS = 0.5
    settings.WATCHER_LOG_REMINDER_SECONDS = 0.5
    caplog.set_level(logging.WARNING, logger="lightning.watcher")
    watcher, thread = start_watcher("patient")
    try:
        wait_for(lambda: "still failing" in caplog.text, 20, "a reminder that the node is down")
    finally:
        watcher.stop()
        thread.join(10)
    assert "node unavailable" in caplog.text


@pytest.mark.django_db
def test_health_is_503_naming_the_watcher_when_none_runs(client, settings):
    never = client.get("/api/health")
    assert never.status_code == 503
    assert never.json()["failing"] == ["watcher"]
    assert never.json()["watcher"]["heartbeatAgeSeconds"] is None

    acquire_lease(node_key(), "w", 15)
    assert client.get("/api/health").status_code == 200

    silent_for = settings.WATCHER_HEALTH_MAX_AGE_SECONDS + 5
    WatcherState.objects.update(heartbeat_at=timezone.now() - timedelta(seconds=silent_for))
    stale = client.get("/api/health")
    assert stale.status_code == 503
    body = stale.json()
    assert body["failing"] == ["watcher"] and body["status"] == "unavailable"
    assert body["watcher"]["heartbeatAgeSeconds"] >= silent_for


@pytest.mark.django_db(transaction=True)  # the watcher closes its connection after failures
def test_a_standby_forgets_past_failures_and_takes_over_a_freed_lease_promptly(monkeypatch):
    """A standby that met database errors earlier backs off from 1 s again once the node and
    the database answer: it kept the grown backoff (up to 30 s), and a dead holder's lease
    then went unclaimed for that long."""
    from django.db import DatabaseError

    from lightning import watcher as watcher_module

    outcomes = iter(["fail", "fail", "fail", "standby", "fail", "stop"])
    waits = []
    watcher = Watcher(holder="standby")

    def acquire(node_key, holder, seconds):
        outcome = next(outcomes)
        if outcome == "fail":
            raise DatabaseError("database is locked")
        if outcome == "stop":
            watcher.stop()
        return False

    class RecordingEvent(threading.Event):
        def wait(self, timeout=None):  # record each pause instead of sleeping through it
            waits.append(timeout)
            return self.is_set()

    monkeypatch.setattr(watcher_module, "acquire_lease", acquire)
    watcher._stop = RecordingEvent()
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    thread.join(10)
    watcher.stop()
    assert not thread.is_alive()
    standby_pause = watcher.lease_seconds / 3
    assert waits == [1.0, 2.0, 4.0, standby_pause, 1.0, standby_pause]
