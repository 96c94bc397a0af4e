"""Watcher benchmark: settlements per second through the watcher, and settle-to-paid latency.

    .venv/bin/python bench/watcher.py [--database sqlite|postgres|both] [-n 5000] [--rate 100]

Throughput: N invoices are settled on the dev node in one burst while the watcher streams;
the figure is N divided by the time from the burst's commit to the last invoice marked paid.
Latency: settlements offered at --rate per second for --seconds; for each, the time from the
node's commit of the settlement to the commit that marks our invoice paid (invoice_paid).
"""

import argparse
import subprocess
import sys
import threading
import time


def run(database: str, n: int, rate: int, seconds: int) -> None:
    from _setup import configure, percentile

    label = configure("watcher", database)
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from lightning import services
    from lightning.backends import get_backend
    from lightning.models import DevNodeCounter, DevNodeInvoice, Invoice
    from lightning.signals import invoice_paid
    from lightning.watcher import Watcher

    backend = get_backend()
    paid_at = {}

    def on_paid(sender, invoice, **kwargs):
        paid_at[invoice.payment_hash] = time.perf_counter()

    invoice_paid.connect(on_paid)
    watcher = Watcher(holder="bench")
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    time.sleep(1.0)  # let it reconcile (nothing yet) and subscribe

    # Throughput: N settlements committed at once.
    invoices = [services.create_invoice(1000, f"bench {i}") for i in range(n)]
    with transaction.atomic():
        counter, _ = DevNodeCounter.objects.select_for_update().get_or_create(pk=1)
        start_index = counter.last_settle_index
        now = timezone.now()
        for offset, invoice in enumerate(invoices, start=1):
            DevNodeInvoice.objects.filter(payment_hash=invoice.payment_hash).update(
                state="SETTLED",
                settle_index=start_index + offset,
                settled_at=now,
                amount_paid_msat=F("amount_msat"),
            )
        DevNodeCounter.objects.filter(pk=1).update(last_settle_index=start_index + n)
    burst_committed = time.perf_counter()
    while Invoice.objects.filter(state="paid").count() < n:
        time.sleep(0.005)
    last_paid = max(paid_at[i.payment_hash] for i in invoices)
    throughput = n / (last_paid - burst_committed)

    # Latency at an offered rate.
    count = rate * seconds
    invoices = [services.create_invoice(1000, f"latency {i}") for i in range(count)]
    settled_at = {}
    started = time.perf_counter()
    for i, invoice in enumerate(invoices):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        backend.pay_invoice(invoice.bolt11)
        settled_at[invoice.payment_hash] = time.perf_counter()
    deadline = time.perf_counter() + 30
    while len([h for h in settled_at if h in paid_at]) < count and time.perf_counter() < deadline:
        time.sleep(0.01)
    latencies = [(paid_at[h] - settled_at[h]) * 1000 for h in settled_at if h in paid_at]
    watcher.stop()
    thread.join(10)
    print(
        f"{label:10} throughput {throughput:8.0f} settlements/s (burst of {n}) | "
        f"latency at {rate}/s: p50 {percentile(latencies, 0.5):6.1f} ms, "
        f"p99 {percentile(latencies, 0.99):6.1f} ms, max {max(latencies):6.1f} ms "
        f"({len(latencies)}/{count} paid)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("-n", type=int, default=5000, help="settlements in the burst")
    parser.add_argument("--rate", type=int, default=100, help="offered settlements per second")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if args.database == "both":
        for database in ("sqlite", "postgres"):
            cmd = [sys.executable, __file__, "--database", database, "-n", str(args.n)]
            cmd += ["--rate", str(args.rate), "--seconds", str(args.seconds)]
            subprocess.run(cmd, check=True)
        return
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    run(args.database, args.n, args.rate, args.seconds)


if __name__ == "__main__":
    main()
