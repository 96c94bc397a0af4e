"""Webhooks benchmark: settlement-to-webhook latency, and deliveries per second.

    .venv/bin/python bench/webhooks.py [--database postgres|sqlite] [--broker redis://...]
        [--payments 300] [--rate 20] [-n 2000] [--concurrency 8]

A real Celery worker (with the watcher, thread pool) on the broker, a loopback HTTP receiver
and an endpoint subscribed to every event.
Latency: checkout invoices paid on the dev node at --rate per second; for each, the time
from the node's commit of the settlement to the receiver's first byte of the
payment.completed webhook (watcher -> payment in one transaction with the outbox rows ->
on commit the delivery task is queued -> a worker thread sends it).
Throughput: -n events emitted in one transaction; deliveries per second from that commit
to the last request received.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """Records the arrival time of each webhook by its invoiceId (or event id)."""

    def __init__(self):
        self.arrived = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self):
                self.first_byte_at = None
                self.rfile.peek(1)  # the request's first byte is here
                self.first_byte_at = time.time()
                super().handle_one_request()

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body["data"].get("invoiceId") or body["id"]
                receiver.arrived[key] = self.first_byte_at
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.request_queue_size = 1024
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_worker(data_dir: Path, broker: str, concurrency: int) -> subprocess.Popen:
    env = dict(
        os.environ,
        CELERY_BROKER_URL=broker,
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        WATCHER_LEASE_SECONDS="2",
    )
    log = open(data_dir / "worker.log", "wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def run(args) -> None:
    from _setup import configure, percentile

    os.environ["CELERY_BROKER_URL"] = args.broker
    os.environ["WEBHOOKS_ALLOW_PRIVATE_TARGETS"] = "true"
    label = configure("webhooks", args.database)
    data_dir = Path(os.environ["ZAPGATE_DATA_DIR"])
    if args.broker.startswith("redis://"):
        import redis

        redis.Redis.from_url(args.broker).flushdb()

    from django.db import transaction

    from checkout.models import CheckoutInvoice
    from checkout.services import create_merchant
    from lightning import services as lightning
    from lightning.backends import get_backend
    from webhooks import services
    from webhooks.models import WebhookDelivery

    receiver = Receiver()
    merchant, _ = create_merchant("Bench shop")
    services.create_endpoint(merchant, receiver.url, ["*"])
    checkouts = []
    for _ in range(args.payments):
        invoice = lightning.create_invoice(1000, "bench", 3600, purpose="checkout")
        checkouts.append(
            CheckoutInvoice.objects.create(
                merchant=merchant, invoice=invoice, amount=1, currency="SAT", sats_amount=1
            )
        )
    worker = start_worker(data_dir, args.broker, args.concurrency)
    try:
        wait(_watcher_streaming, 60, "the worker's watcher")
        # Warm up the worker (imports, connections) with a few deliveries.
        with transaction.atomic():
            for _ in range(20):
                services.emit(merchant, "webhook.test", {})
        wait(lambda: len(receiver.arrived) >= 20, 30, "the warm-up deliveries")

        backend = get_backend()
        settled_at = {}
        started = time.perf_counter()
        for i, checkout in enumerate(checkouts):
            delay = started + i / args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            backend.pay_invoice(checkout.invoice.bolt11)
            settled_at[checkout.public_id] = time.time()
        wait(lambda: all(k in receiver.arrived for k in settled_at), 60, "every payment webhook")
        latencies = [(receiver.arrived[k] - settled_at[k]) * 1000 for k in settled_at]
        stages = _stages(settled_at, receiver.arrived)

        already = len(receiver.arrived)
        with transaction.atomic():
            for _ in range(args.n):
                services.emit(merchant, "webhook.test", {})
        burst_committed = time.time()
        wait(lambda: len(receiver.arrived) >= already + args.n, 300, "the burst")
        last = max(receiver.arrived.values())
        throughput = args.n / (last - burst_committed)
        # The receiver has every request; give the worker a moment to record the answers.
        wait(
            lambda: not WebhookDelivery.objects.exclude(status="delivered").exists(),
            30,
            "every delivery to be recorded as delivered",
        )
    finally:
        worker.terminate()
        worker.wait(30)
    broker = args.broker.split("://")[0]
    print(
        f"{label} + {broker} broker, worker threads={args.concurrency}: "
        f"settlement -> webhook first byte at {args.rate}/s: "
        f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
        f"max {max(latencies):.1f} ms ({len(latencies)} payments) | "
        f"throughput {throughput:.0f} deliveries/s (burst of {args.n})",
        flush=True,
    )
    print(
        "  p50 by stage: "
        + ", ".join(f"{name} {percentile(v, 0.5):.1f} ms" for name, v in stages.items())
        + " | p99: "
        + ", ".join(f"{name} {percentile(v, 0.99):.1f} ms" for name, v in stages.items())
    )


def _stages(settled_at: dict, arrived: dict) -> dict:
    """Where the time goes: settlement -> event written (the watcher), -> attempt started
    (commit, queue, worker), -> first byte at the receiver (signing, connect, send)."""
    from webhooks.models import WebhookAttempt

    stages = {"watcher": [], "queue": [], "send": []}
    attempts = WebhookAttempt.objects.filter(
        delivery__event__type="payment.completed", number=1
    ).select_related("delivery__event")
    for attempt in attempts:
        key = json.loads(attempt.delivery.event.body)["data"]["invoiceId"]
        event_at = attempt.delivery.event.created_at.timestamp()
        started = attempt.started_at.timestamp()
        stages["watcher"].append((event_at - settled_at[key]) * 1000)
        stages["queue"].append((started - event_at) * 1000)
        stages["send"].append((arrived[key] - started) * 1000)
    return stages


def _watcher_streaming() -> bool:
    from lightning.models import WatcherState

    return WatcherState.objects.filter(lease_expires_at__isnull=False).exists()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--payments", type=int, default=300)
    parser.add_argument("--rate", type=int, default=20, help="payments per second")
    parser.add_argument("-n", type=int, default=2000, help="events in the throughput burst")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    run(args)


if __name__ == "__main__":
    main()
