"""Checkout API benchmark: checkout invoice creation and status reads per second, with
latency p50/p99, at concurrency 1, 8 and 32, against gunicorn with the dev node.

    .venv/bin/python bench/checkout.py [--database postgres|sqlite] [--seconds 10]
        [--workers 4] [--threads 4] [--concurrency 1,8,32] [--operations create,read,status]
    .venv/bin/python bench/checkout.py --target http://127.0.0.1:8000 --key zg_inv_...

Without --target it makes a fresh database (zg_bench_checkout on PostgreSQL), migrates it,
creates a merchant and an invoice key, and starts gunicorn on a free loopback port. The
client keeps one HTTP/1.1 keep-alive connection per thread. Reads are
GET /api/checkout/invoices/{id} (merchant API) and GET /checkout/{id}/status (the public
status the hosted page polls; skipped with a message while that endpoint answers 404).
"""

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import process_cpu_seconds  # noqa: E402

CREATE_BODY = json.dumps({"amount": "1.00", "currency": "USD", "userRef": "bench"})


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, base_url: str, key: str):
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname, url.port or 80
        self.headers = {"X-Api-Key": key, "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run_phase(base_url, key, concurrency, seconds, make_request):
    """`concurrency` threads issue requests for `seconds`; returns (rate, p50, p99, errors)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    start_barrier = threading.Barrier(concurrency + 1)

    def worker(index):
        client = Client(base_url, key)
        mine, my_errors, n = [], [], index
        start_barrier.wait()
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            ok, what = make_request(client, n)
            mine.append(time.perf_counter() - t0)
            if not ok:
                my_errors.append(what)
            n += concurrency
        with lock:
            latencies.extend(mine)
            errors.extend(my_errors)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start_barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99), errors


def children_of(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return pids


class ServerCpu:
    """CPU the server side spends: gunicorn's workers and the database's backends serving
    this database (PostgreSQL on this machine). Independent of other load on the machine,
    unlike requests per second."""

    def __init__(self, gunicorn_pid: int | None):
        self.gunicorn_pid = gunicorn_pid

    def pids(self) -> list[int]:
        pids = children_of(self.gunicorn_pid) if self.gunicorn_pid else []
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
                pids += [row[0] for row in cursor.fetchall()]
        return pids

    def snapshot(self) -> dict[int, float]:
        return process_cpu_seconds(self.pids())

    def spent_since(self, before: dict[int, float]) -> float:
        after = self.snapshot()
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def local_setup(database: str) -> tuple[str, str]:
    from _setup import configure

    label = configure("checkout", database)
    from checkout.models import ApiKey
    from checkout.services import create_merchant, issue_api_key

    merchant, _ = create_merchant("Bench Roasters")
    _, key = issue_api_key(merchant, ApiKey.Kind.INVOICE, "bench")
    return label, key


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--target", help="benchmark a running gateway at this base URL")
    parser.add_argument("--key", help="an invoice or admin key of the target")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--operations", default="create,read,status")
    args = parser.parse_args()

    proc = None
    if args.target:
        if not args.key:
            raise SystemExit("--target needs --key")
        base_url, key, label = args.target.rstrip("/"), args.key, args.target
    else:
        label, key = local_setup(args.database)
        from _setup import start_gunicorn

        proc, port = start_gunicorn("config.wsgi", args.workers, args.threads, "checkout")
        base_url = f"http://127.0.0.1:{port}"
        label = f"{label}, gunicorn gthread {args.workers}x{args.threads}, dev node"

    server_cpu = ServerCpu(proc.pid if proc else None) if not args.target else None
    created_ids: list[str] = []
    ids_lock = threading.Lock()

    def create(client, n):
        status, body = client.request("POST", "/api/checkout/invoices", CREATE_BODY)
        if status != 201:
            return False, f"{status} {body[:200]!r}"
        with ids_lock:
            created_ids.append(json.loads(body)["invoiceId"])
        return True, ""

    def read_api(client, n):
        status, body = client.request("GET", f"/api/checkout/invoices/{created_ids[n % 500]}")
        return status == 200, f"{status} {body[:200]!r}"

    def read_status(client, n):
        status, body = client.request("GET", f"/checkout/{created_ids[n % 500]}/status")
        return status == 200, f"{status} {body[:200]!r}"

    probe = Client(base_url, key)
    create(probe, 0)
    status_available = probe.request("GET", f"/checkout/{created_ids[0]}/status")[0] == 200

    operations = args.operations.split(",")
    phases = []
    if "create" in operations:
        phases.append(("create  POST /api/checkout/invoices", create))
    if "read" in operations:
        phases.append(("read    GET /api/checkout/invoices/{id}", read_api))
    if "status" in operations and status_available:
        phases.append(("status  GET /checkout/{id}/status", read_status))
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"Checkout benchmark ({label}), {args.seconds:g} s per figure")
    print(
        f"{'operation':40} {'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
        f" {'server CPU ms/req':>18}"
    )
    try:
        for name, request in phases:
            for concurrency in levels:
                if request is not create and len(created_ids) < 500:
                    while len(created_ids) < 500:
                        create(probe, 0)
                before = server_cpu.snapshot() if server_cpu else None
                rate, p50, p99, errors = run_phase(
                    base_url, key, concurrency, args.seconds, request
                )
                cpu = "-"
                if server_cpu:
                    spent = server_cpu.spent_since(before)
                    cpu = f"{spent * 1000 / (rate * args.seconds):.2f}"
                print(
                    f"{name:40} {concurrency:>5} {rate:>8.0f} {p50 * 1000:>8.1f} "
                    f"{p99 * 1000:>8.1f} {len(errors):>7} {cpu:>18}",
                    flush=True,
                )
                if errors:
                    print(f"    first error: {errors[0]}")
        if "status" in operations and not status_available:
            print("status  GET /checkout/{id}/status: skipped (the endpoint answers 404 here)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
