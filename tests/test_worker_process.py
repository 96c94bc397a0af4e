"""The watcher in real Celery worker processes: SIGKILLed mid-stream, started after
settlements, two at once. Every settled invoice must end paid exactly once."""

import threading
import time

import pytest
from django.db import connection
from django.db.models import Count

from lightning import services
from lightning.backends import get_backend
from lightning.models import Invoice, InvoiceTransition, WatcherState

from .processes import Worker, wait_for

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def paid_count() -> int:
    return Invoice.objects.filter(state="paid").count()


def assert_each_paid_exactly_once(invoices):
    assert paid_count() == len(invoices)
    per_invoice = dict(
        InvoiceTransition.objects.filter(to_state="paid")
        .values_list("invoice_id")
        .annotate(n=Count("id"))
        .values_list("invoice_id", "n")
    )
    assert per_invoice == {invoice.pk: 1 for invoice in invoices}
    # Reconciling at start may pay invoices before the stream replays them; the stream
    # then catches up to the node's last settle index, applying nothing twice.
    wait_for(
        lambda: WatcherState.objects.get().settle_index == len(invoices),
        30,
        f"the stored settle index to reach {len(invoices)}",
    )
    assert InvoiceTransition.objects.filter(to_state="paid").count() == len(invoices)


def streaming(worker):
    return "streaming devnode:" in worker.log()


POOLS = pytest.mark.parametrize("pool", ["threads", "prefork"])


def holder_and_standby(first, second):
    """Wait until one of two workers streams and the other stands by; (holder, standby)."""
    holder = wait_for(
        lambda: (streaming(first) and first) or (streaming(second) and second),
        30,
        "one worker to stream",
    )
    standby = second if holder is first else first
    wait_for(lambda: "standing by" in standby.log(), 30, "the other worker to stand by")
    return holder, standby


@POOLS
def test_sigkill_while_settling_loses_nothing_and_pays_nothing_twice(tmp_path, pool):
    invoices = [services.create_invoice(1000 + n * 1000, f"#{n}") for n in range(150)]
    backend = get_backend()
    worker = Worker(tmp_path, "w0", pool).start()
    workers = [worker]
    wait_for(lambda: streaming(worker), 30, "the first worker to stream")

    def pay_all():
        try:
            for invoice in invoices:
                backend.pay_invoice(invoice.bolt11)
                time.sleep(0.03)
        finally:
            connection.close()

    payer = threading.Thread(target=pay_all)
    payer.start()
    try:
        for round_ in range(1, 4):
            progress = paid_count()
            wait_for(
                lambda p=progress: paid_count() > p or paid_count() == len(invoices),
                30,
                "the worker to mark payments paid",
            )
            worker.kill()
            time.sleep(0.3)  # settlements keep landing while no worker runs
            worker = Worker(tmp_path, f"w{round_}", pool).start()
            workers.append(worker)
        payer.join(60)
        wait_for(lambda: paid_count() == len(invoices), 60, "every settled invoice to be paid")
        assert_each_paid_exactly_once(invoices)
    finally:
        payer.join(60)
        for w in workers:
            w.stop()


def test_settlements_made_while_no_worker_runs_are_paid_on_start(tmp_path):
    invoices = [services.create_invoice(5000, f"offline #{n}") for n in range(10)]
    for invoice in invoices:
        get_backend().pay_invoice(invoice.bolt11)
    assert paid_count() == 0
    worker = Worker(tmp_path, "late").start()
    try:
        wait_for(lambda: paid_count() == 10, 30, "the offline settlements to be paid")
        assert_each_paid_exactly_once(invoices)
    finally:
        worker.stop()


@POOLS
def test_two_workers_one_subscriber_and_takeover_after_kill(tmp_path, pool):
    first, second = Worker(tmp_path, "a", pool).start(), Worker(tmp_path, "b", pool).start()
    try:
        holder, standby = holder_and_standby(first, second)
        assert not streaming(standby), "exactly one worker subscribes"
        assert f":{holder.pid}:" in WatcherState.objects.get().lease_holder

        holder.kill()
        invoice = services.create_invoice(21_000, "after takeover")
        get_backend().pay_invoice(invoice.bolt11)
        wait_for(lambda: streaming(standby), 30, "the standby worker to take over")
        wait_for(lambda: paid_count() == 1, 30, "the payment to be applied by the new holder")
        assert f":{standby.pid}:" in WatcherState.objects.get().lease_holder
        assert_each_paid_exactly_once([invoice])
    finally:
        first.stop()
        second.stop()


@POOLS
def test_a_paused_lease_holder_applies_nothing_after_losing_its_lease(tmp_path, pool):
    """SIGSTOP the streaming worker while payments stream, past its lease: the standby takes
    over and applies them; SIGCONT the first: it finds its lease gone and writes nothing (no
    second payment, no stale settle index over the new holder's)."""
    invoices = [services.create_invoice(1000 * (n + 1), f"#{n}") for n in range(80)]
    backend = get_backend()
    first, second = Worker(tmp_path, "a", pool).start(), Worker(tmp_path, "b", pool).start()
    try:
        holder, standby = holder_and_standby(first, second)
        for invoice in invoices[:20]:
            backend.pay_invoice(invoice.bolt11)
        # Frozen between batches (a process frozen inside a transaction holds its locks, on
        # any database, until it runs again: nobody can take over before that).
        wait_for(
            lambda: WatcherState.objects.get().settle_index == 20, 30, "the holder to apply them"
        )
        holder.pause()
        for invoice in invoices[20:60]:  # while the holder is frozen
            backend.pay_invoice(invoice.bolt11)
        wait_for(lambda: streaming(standby), 30, "the standby to take the lease over")
        wait_for(lambda: paid_count() == 60, 30, "the new holder to apply them")
        holder.resume()
        wait_for(
            lambda: "taken over" in holder.log() or "no longer held" in holder.log(),
            30,
            "the resumed worker to notice it lost the lease",
        )
        for invoice in invoices[60:]:
            backend.pay_invoice(invoice.bolt11)
        wait_for(lambda: paid_count() == 80, 30, "every payment to be applied")
        assert f":{standby.pid}:" in WatcherState.objects.get().lease_holder
        assert_each_paid_exactly_once(invoices)
    finally:
        first.stop()
        second.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimNodeProcess:
    """`manage.py simnode` in its own process, so it can be SIGKILLed and restarted."""

    def __init__(self, directory, port):
        self.directory, self.port, self.proc = directory, port, None

    def start(self):
        import subprocess
        import sys

        from .processes import ROOT

        (self.directory / "control.port").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "simnode", "--dir", str(self.directory)]
            + ["--port", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: (self.directory / "control.port").exists(), 30, "the sim node to start")
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


def test_lnd_node_restart_mid_stream_is_survived(tmp_path, settings):
    from lightning.backends import reset_backend
    from lightning.simnode import control_pay

    directory = tmp_path / "lnd"
    directory.mkdir()
    node = SimNodeProcess(directory, _free_port()).start()
    lnd_env = {
        "LIGHTNING_BACKEND": "lnd",
        "LND_GRPC_HOST": f"127.0.0.1:{node.port}",
        "LND_TLS_CERT": str(directory / "tls.cert"),
        "LND_MACAROON": str(directory / "admin.macaroon"),
        "LND_TIMEOUT_SECONDS": "5",
    }
    settings.LIGHTNING_BACKEND = "lnd"
    settings.LND_GRPC_HOST = lnd_env["LND_GRPC_HOST"]
    settings.LND_TLS_CERT = lnd_env["LND_TLS_CERT"]
    settings.LND_MACAROON = lnd_env["LND_MACAROON"]
    reset_backend()
    invoices = [services.create_invoice(2000 * (n + 1), f"lnd #{n}") for n in range(30)]
    reset_backend()  # the test process holds no channel across the node restart
    worker = Worker(tmp_path, "lnd", **lnd_env).start()
    try:
        wait_for(lambda: "streaming lnd:" in worker.log(), 30, "the worker to stream from LND")
        for invoice in invoices[:10]:
            assert control_pay(directory, invoice.bolt11)[0] == 200
        wait_for(lambda: paid_count() == 10, 30, "the first ten to be paid")

        node.kill()
        wait_for(lambda: "node unavailable" in worker.log(), 30, "the worker to notice")
        node.start()
        for invoice in invoices[10:20]:  # while the watcher is still reconnecting
            assert control_pay(directory, invoice.bolt11)[0] == 200
        wait_for(lambda: paid_count() == 20, 60, "the payments made during the outage")
        for invoice in invoices[20:]:
            assert control_pay(directory, invoice.bolt11)[0] == 200
        wait_for(lambda: paid_count() == 30, 30, "the payments made after it")
        assert_each_paid_exactly_once(invoices)
    finally:
        worker.stop()
        node.kill()
