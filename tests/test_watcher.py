"""The watcher's rules, in process: exactly-once payment, settlement beats expiry, the
lease, resuming from the stored settle index, reconciling with the node."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from lightning import reactions, services
from lightning.backends import get_backend
from lightning.models import DevNodeInvoice, Invoice, InvoiceTransition, WatcherState
from lightning.signals import invoice_paid
from lightning.watcher import Watcher, acquire_lease, release_lease, seconds_until_free

from .processes import wait_for


def node_key():
    return f"devnode:{get_backend().get_info().pubkey}"


def settled(invoice):
    return get_backend().lookup_invoice(invoice.payment_hash)


@pytest.mark.django_db(transaction=True)
def test_a_settlement_applied_twice_pays_once_and_signals_once():
    invoice = services.create_invoice(10_000, "once")
    get_backend().pay_invoice(invoice.bolt11)
    heard = []

    def receiver(sender, invoice, **kwargs):
        heard.append(invoice.payment_hash)

    invoice_paid.connect(receiver)
    try:
        first = services.apply_settlements([settled(invoice)])
        second = services.apply_settlements([settled(invoice)])
    finally:
        invoice_paid.disconnect(receiver)
    assert [i.pk for i in first] == [invoice.pk] and second == []
    assert heard == [invoice.payment_hash]
    invoice.refresh_from_db()
    assert invoice.state == "paid" and invoice.amount_paid_msat == 10_000
    assert invoice.preimage and invoice.settle_index == 1
    assert InvoiceTransition.objects.filter(invoice=invoice, to_state="paid").count() == 1


@pytest.mark.django_db
def test_settlement_wins_over_a_racing_expiry():
    invoice = services.create_invoice(10_000, "race", expiry_seconds=60)
    get_backend().pay_invoice(invoice.bolt11)  # settled on the node in time...
    assert services.expire_invoices(now=timezone.now() + timedelta(minutes=5)) == 1
    invoice.refresh_from_db()
    assert invoice.state == "expired"  # ...but our sweep ran before the watcher saw it
    services.apply_settlements([settled(invoice)])
    invoice.refresh_from_db()
    assert invoice.state == "paid"
    assert invoice.paid_at == settled(invoice).settled_at
    assert list(invoice.transitions.values_list("from_state", "to_state")) == [
        ("open", "expired"),
        ("expired", "paid"),
    ]


@pytest.mark.django_db
def test_paid_after_expiry_is_recorded_as_paid_late():
    invoice = services.create_invoice(10_000, "late", expiry_seconds=60)
    get_backend().pay_invoice(invoice.bolt11)
    node_invoice = settled(invoice)
    Invoice.objects.filter(pk=invoice.pk).update(expires_at=node_invoice.settled_at - timedelta(1))
    services.apply_settlements([node_invoice])
    invoice.refresh_from_db()
    assert invoice.state == "paid" and invoice.paid_late


@pytest.mark.django_db
def test_expiry_sweep_leaves_unexpired_and_paid_invoices_alone():
    fresh = services.create_invoice(1000, "fresh", expiry_seconds=600)
    old = services.create_invoice(1000, "old", expiry_seconds=60)
    paid = services.create_invoice(1000, "paid", expiry_seconds=60)
    get_backend().pay_invoice(paid.bolt11)
    services.apply_settlements([settled(paid)])
    assert services.expire_invoices(now=timezone.now() + timedelta(seconds=120)) == 1
    states = dict(Invoice.objects.values_list("memo", "state"))
    assert states == {"fresh": "open", "old": "expired", "paid": "paid"}
    assert fresh.pk and old.pk


@pytest.mark.django_db
def test_only_one_holder_gets_the_lease_until_it_runs_out():
    key = "devnode:test"
    assert acquire_lease(key, "a", 30)
    assert not acquire_lease(key, "b", 30)
    assert acquire_lease(key, "a", 30)  # renewal
    WatcherState.objects.filter(node_key=key).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert acquire_lease(key, "b", 30)
    assert not acquire_lease(key, "a", 30)
    release_lease(key, "b")
    assert acquire_lease(key, "a", 30)


@pytest.mark.django_db
def test_a_standby_tries_again_when_the_lease_runs_out_not_a_third_of_a_lease_later():
    key = "devnode:test"
    assert seconds_until_free(key, 5.0) == 5.0  # nobody has held it: the usual pause
    acquire_lease(key, "a", 30)
    assert seconds_until_free(key, 5.0) == 5.0  # a live holder: checked again in 5 s
    WatcherState.objects.filter(node_key=key).update(
        lease_expires_at=timezone.now() + timedelta(seconds=1)
    )
    assert 0.5 < seconds_until_free(key, 5.0) <= 1.1  # a holder killed 14 s ago
    release_lease(key, "a")  # handed back by a holder that stopped
    assert seconds_until_free(key, 5.0) == 0.05
    WatcherState.objects.filter(node_key=key).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert seconds_until_free(key, 5.0) == 0.05  # run out already: at once


@pytest.mark.django_db
def test_a_watcher_that_lost_its_lease_applies_nothing():
    invoice = services.create_invoice(1000, "x")
    get_backend().pay_invoice(invoice.bolt11)
    acquire_lease(node_key(), "new-holder", 30)
    with pytest.raises(services.LeaseLost):
        services.apply_settlements([settled(invoice)], node_key=node_key(), holder="old-holder")
    invoice.refresh_from_db()
    assert invoice.state == "open"
    assert WatcherState.objects.get(node_key=node_key()).settle_index == 0


@pytest.mark.django_db(transaction=True)
def test_watcher_thread_pays_streamed_settlements_and_resumes_from_its_index(settings):
    settings.WATCHER_LEASE_SECONDS = 3
    invoices = [services.create_invoice(1000 * (n + 1), f"#{n}") for n in range(5)]
    backend = get_backend()
    backend.pay_invoice(invoices[0].bolt11)  # before the watcher starts: reconcile finds it
    watcher = Watcher(holder="t1")
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        for invoice in invoices[1:3]:
            backend.pay_invoice(invoice.bolt11)
        wait_for(
            lambda: Invoice.objects.filter(state="paid").count() == 3, 10, "three paid invoices"
        )
        wait_for(
            lambda: WatcherState.objects.get(node_key=node_key()).settle_index == 3,
            10,
            "the stored settle index to reach 3",
        )
    finally:
        watcher.stop()
        thread.join(10)
    assert WatcherState.objects.get(node_key=node_key()).lease_expires_at is None  # handed back
    for invoice in invoices[3:]:
        backend.pay_invoice(invoice.bolt11)
    watcher = Watcher(holder="t2")
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        wait_for(lambda: Invoice.objects.filter(state="paid").count() == 5, 10, "all paid")
        wait_for(
            lambda: WatcherState.objects.get(node_key=node_key()).settle_index == 5, 10, "index 5"
        )
    finally:
        watcher.stop()
        thread.join(10)
    assert InvoiceTransition.objects.filter(to_state="paid").count() == 5


@pytest.mark.django_db
def test_reconcile_pays_settled_and_expires_overdue_invoices():
    paid = services.create_invoice(1000, "paid on the node")
    overdue = services.create_invoice(1000, "overdue", expiry_seconds=60)
    get_backend().pay_invoice(paid.bolt11)
    Invoice.objects.filter(pk=overdue.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    DevNodeInvoice.objects.filter(payment_hash=overdue.payment_hash).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    counts = services.reconcile_invoices(full=True)
    assert counts["paid"] == 1
    assert dict(Invoice.objects.values_list("memo", "state")) == {
        "paid on the node": "paid",
        "overdue": "expired",
    }


@pytest.mark.django_db
def test_a_routine_reconcile_asks_the_node_only_about_hold_invoices():
    """The stream replays every settlement after the stored settle index; what it never
    carries is a hold invoice's ACCEPTED or CANCELED, so only those are asked about."""
    plain = [services.create_invoice(1000, f"plain #{n}") for n in range(3)]
    hold = services.create_hold_invoice("ab" * 32, 2000, "held")
    get_backend().pay_invoice(plain[0].bolt11)
    get_backend().cancel_hold_invoice(hold.payment_hash)
    counts = services.reconcile_invoices()
    assert counts == {"checked": 1, "paid": 0, "accepted": 0, "canceled": 1, "errors": 0}
    assert Invoice.objects.get(pk=hold.pk).state == "canceled"
    assert Invoice.objects.get(pk=plain[0].pk).state == "open"  # the stream's to apply


@pytest.mark.django_db
def test_state_changes_reach_the_reactions_of_their_purpose_inside_the_transaction(
    monkeypatch,
):
    seen = []

    def record(invoice, from_state, to_state):
        seen.append((invoice.memo, from_state, to_state, invoice.state))

    monkeypatch.setitem(
        reactions._reactions, "test.record", reactions.Reaction("test.record", "test", record)
    )
    invoice = services.create_invoice(1000, "announced", expiry_seconds=60, purpose="test")
    services.create_invoice(1000, "someone else's", expiry_seconds=60, purpose="other")
    services.expire_invoices(now=timezone.now() + timedelta(minutes=2))
    get_backend().pay_invoice(services.create_invoice(1000, "paid", purpose="test").bolt11)
    services.reconcile_invoices(full=True)
    assert sorted(seen) == [
        ("announced", "open", "expired", "expired"),
        ("paid", "open", "paid", "paid"),
    ]
    assert invoice.pk


@pytest.mark.django_db
def test_an_operator_can_reconcile_every_open_invoice():
    from io import StringIO

    from django.core.management import call_command

    invoice = services.create_invoice(1000, "settled while nobody watched")
    get_backend().pay_invoice(invoice.bolt11)
    out = StringIO()
    call_command("reconcile_invoices", stdout=out)
    assert Invoice.objects.get(pk=invoice.pk).state == "open"
    call_command("reconcile_invoices", "--all", stdout=out)
    assert Invoice.objects.get(pk=invoice.pk).state == "paid"
    assert "checked 1, paid 1, accepted 0, canceled 0" in out.getvalue()
