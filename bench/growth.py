"""What a million invoices cost: checkout creation and status reads on an empty database,
then after seeding `-n` past invoices (bench/seed_invoices.py), and the ratio.

    .venv/bin/python bench/growth.py [--database sqlite|postgres] [-n 1000000]
        [--seconds 10] [--data-dir /tmp/zapgate-bench-growth-sqlite]
    .venv/bin/python bench/growth.py --explain [--database ...]   # query plans, no server

Each phase starts the gateway as `make run` does (scripts/run.py: web server, Celery
worker with the watcher, and beat, so the periodic sweeps run alongside as in
production), on a free loopback port, and talks to it only over HTTP with the demo
merchant's admin key that run.py prints last in its banner. It measures with `hey`:
POST /api/checkout/invoices at concurrency 32 and at 1 (p50), and
GET /checkout/{id}/status of a fresh open invoice at 32, and the server's CPU per request
(the whole gateway and its PostgreSQL backends: it does not depend on what else runs on
the machine, requests per second do). Two databases, one empty and one seeded with `-n`
invoices, are measured in turns (--rounds), so both see the same machine; it prints each
round, the medians and their ratio. --reuse keeps the seeded database of an earlier run.

PostgreSQL: the database `zg_bench_growth` (--pg-name) at BENCH_POSTGRES_URL (made afresh), with
Redis as the broker (BENCH_REDIS_URL, default redis://127.0.0.1:6379/12); SQLite: the
embedded broker. --explain prints the plan of every query one create and one status read
make, and those of the periodic sweeps, on a database seeded with -n invoices, and says
which of them scan a whole table.
"""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import descendants, process_cpu_seconds  # noqa: E402

PG_BASE = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
CREATE_BODY = json.dumps({"amount": "100", "currency": "SAT", "description": "x"})
BIG_TABLES = (
    "lightning_invoice",
    "lightning_devnodeinvoice",
    "lightning_invoicetransition",
    "checkout_checkoutinvoice",
    "wallets_payment",
    "wallets_ledgerentry",
    "webhooks_webhookevent",
    "webhooks_webhookdelivery",
)


def environment(database: str, data_dir: Path, fresh: bool, pg_name: str) -> dict:
    env = dict(os.environ, ZAPGATE_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING")
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    if database == "postgres":
        if fresh:
            import psycopg

            with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {pg_name}")
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
        env["DATABASE_URL"] = f"{PG_BASE}/{pg_name}"
        env["CELERY_BROKER_URL"] = REDIS_URL
    elif fresh:
        for leftover in data_dir.glob("zapgate.sqlite3*"):
            leftover.unlink()
    return env


def free_port(first: int = 18450, last: int = 18499) -> int:
    """A free loopback port in this project's benchmark range."""
    import socket

    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port in {first}-{last}")


class Gateway:
    """scripts/run.py on a free port; the admin key is the last line of its banner."""

    def __init__(self, env: dict):
        self.port = free_port()
        self.env = dict(env, PORT=str(self.port))
        self.log = open(Path(env["ZAPGATE_DATA_DIR"]) / "run.log", "ab")
        self.proc = None
        self.key = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/run.py"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        lines = []
        deadline = time.monotonic() + 120
        for line in self.proc.stdout:
            lines.append(line.strip())
            if "Press Ctrl-C" in line:
                break
            if time.monotonic() > deadline:
                break
        keys = [ln for ln in lines if ln.startswith("zg_")]
        if not keys:
            self.stop()
            raise SystemExit(f"scripts/run.py printed no key: {lines[-10:]}")
        self.key = keys[-1]
        # Its output (access log) goes to the log from here on, not into a full pipe.
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _ = self.request("GET", "/api/health")
                if status < 500:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        return self

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"X-Api-Key": self.key or "", "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc):
        self.stop()


class ServerCpu:
    """CPU of the whole gateway (web, worker with the watcher, beat) and of the PostgreSQL
    backends serving its database: unlike requests per second, it does not depend on what
    else runs on the machine. The sweeps' share is in it, as it is in production."""

    def __init__(self, gateway: "Gateway"):
        self.gateway = gateway

    def pids(self) -> list[int]:
        pids = descendants(self.gateway.proc.pid)
        url = self.gateway.env.get("DATABASE_URL", "")
        if url.startswith("postgres"):
            import psycopg

            with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchall()
            pids += [row[0] for row in rows]
        return pids

    def snapshot(self) -> dict[int, float]:
        return process_cpu_seconds(self.pids())

    def since(self, before: dict[int, float]) -> float:
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in self.snapshot().items())


def hey(gateway: "Gateway", seconds: float, concurrency: int, path: str, post: bool) -> dict:
    command = ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-t", "30"]
    if post:
        command += ["-m", "POST", "-T", "application/json", "-d", CREATE_BODY]
        command += ["-H", f"X-Api-Key: {gateway.key}"]
    server = ServerCpu(gateway)
    before = server.snapshot()
    out = subprocess.run(
        [*command, gateway.base + path], capture_output=True, text=True, check=True
    ).stdout
    cpu = server.since(before)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%+ in ([\d.]+) secs", out)
    codes = {code: int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    bad = {c: n for c, n in codes.items() if c not in ("200", "201")}
    return {
        "rate": rate,
        "p50_ms": float(p50.group(1)) * 1000 if p50 else None,
        "cpu_ms": 1000 * cpu / max(1, sum(codes.values())),
        "bad": bad,
    }


def measure(gateway: "Gateway", seconds: float) -> dict:
    status, body = gateway.request("POST", "/api/checkout/invoices", CREATE_BODY)
    if status != 201:
        raise SystemExit(f"create answered {status}: {body[:300]!r}")
    invoice_id = json.loads(body)["invoiceId"]
    hey(gateway, 2, 8, "/api/checkout/invoices", post=True)  # warm up every worker
    figures = {
        "create_32": hey(gateway, seconds, 32, "/api/checkout/invoices", post=True),
        "create_1": hey(gateway, seconds, 1, "/api/checkout/invoices", post=True),
        "status_32": hey(gateway, seconds, 32, f"/checkout/{invoice_id}/status", post=False),
    }
    for name, figure in figures.items():
        if figure["bad"]:
            print(f"  warning: {name} had non-2xx answers {figure['bad']}", flush=True)
    return figures


def show(label: str, figures: dict) -> None:
    c32, c1, s32 = figures["create_32"], figures["create_1"], figures["status_32"]
    print(
        f"  {label:14} create c=32 {c32['rate']:6.1f}/s ({c32['cpu_ms']:5.2f} ms CPU)   "
        f"create c=1 p50 {c1['p50_ms']:5.1f} ms ({c1['cpu_ms']:5.2f} ms CPU)   "
        f"status c=32 {s32['rate']:6.1f}/s ({s32['cpu_ms']:5.2f} ms CPU)",
        flush=True,
    )


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summary(rounds: list[dict]) -> dict:
    """The median of each figure over the rounds."""
    return {
        name: {key: median([r[name][key] for r in rounds]) for key in ("rate", "p50_ms", "cpu_ms")}
        for name in rounds[0]
    }


def invoice_count(env: dict) -> int:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from lightning.models import Invoice; "
            "print(Invoice.objects.count())",
        ],
        cwd=ROOT,
        env=dict(env, DJANGO_SETTINGS_MODULE="config.settings"),
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


def run_growth(args) -> None:
    """Two databases, one empty and one seeded, measured in turns (`--rounds`), so both
    see the same machine; medians of the rounds and their ratio."""
    base = Path(args.data_dir or f"/tmp/zapgate-bench-growth-{args.database}")
    label = f"{args.n / 1e6:g}M invoices"
    envs = {}
    for name, pg_name in (("empty", f"{args.pg_name}_empty"), (label, args.pg_name)):
        data_dir = base / ("empty" if name == "empty" else "seeded")
        data_dir.mkdir(parents=True, exist_ok=True)
        reuse = args.reuse and name != "empty"
        env = environment(args.database, data_dir, fresh=not reuse, pg_name=pg_name)
        envs[name] = env
    print(f"{args.database}: data in {base}/{{empty,seeded}}", flush=True)
    have = invoice_count(envs[label]) if args.reuse else 0
    if have < args.n:
        print(f"seeding {args.n - have:,} invoices ...", flush=True)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "bench/seed_invoices.py", "-n", str(args.n - have)],
            cwd=ROOT,
            env=envs[label],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)
    results = {name: [] for name in envs}
    for round_number in range(1, args.rounds + 1):
        for name, env in envs.items():
            with Gateway(env) as gateway:
                time.sleep(args.settle)  # the watcher's start and the first sweeps
                figures = measure(gateway, args.seconds)
            results[name].append(figures)
            show(f"{name} #{round_number}", figures)
    medians = {name: summary(rounds) for name, rounds in results.items()}
    empty, seeded = medians["empty"], medians[label]
    print(f"medians of {args.rounds} rounds:")
    show("empty", empty)
    show(label, seeded)

    def ratio(name, key):
        return seeded[name][key] / empty[name][key]

    print(
        f"  {'seeded/empty':14} create c=32 {ratio('create_32', 'rate'):6.2f}x "
        f"(CPU {ratio('create_32', 'cpu_ms'):.2f}x)      "
        f"create c=1 p50 {ratio('create_1', 'p50_ms'):5.2f}x "
        f"(CPU {ratio('create_1', 'cpu_ms'):.2f}x)"
        f"      status c=32 {ratio('status_32', 'rate'):6.2f}x "
        f"(CPU {ratio('status_32', 'cpu_ms'):.2f}x)",
        flush=True,
    )


# --- query plans ----------------------------------------------------------------------


def plan(connection, sql: str) -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            return [row[-1] for row in cursor.fetchall()]
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql)
        return [row[0] for row in cursor.fetchall()]


def scans(connection, lines: list[str]) -> list[str]:
    """The plan lines that read a whole big table (or all of a full index of one; a
    partial index holds only the few rows a sweep is after)."""
    found = []
    for line in lines:
        if connection.vendor == "sqlite":
            match = re.match(r"\s*SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?", line)
            if match and match.group(1) in BIG_TABLES and match.group(2) not in partial_indexes():
                found.append(line.strip())
            # A range on the primary key from the start (reconcile's pages) reads it all.
            match = re.match(r"\s*SEARCH (\w+) USING INTEGER PRIMARY KEY \(rowid>\?\)", line)
            if match and match.group(1) in BIG_TABLES:
                found.append(line.strip())
        elif "Seq Scan on" in line and any(f" {t} " in line + " " for t in BIG_TABLES):
            found.append(line.strip())
    return found


def partial_indexes() -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'"
        )
        return {row[0] for row in cursor.fetchall()}


def explain(args) -> None:
    """Seed (unless the database has enough invoices), then capture and explain."""
    data_dir = Path(args.data_dir or f"/tmp/zapgate-bench-growth-{args.database}")
    data_dir.mkdir(parents=True, exist_ok=True)
    env = environment(args.database, data_dir, fresh=False, pg_name=args.pg_name)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, reset_queries, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    from checkout.models import ApiKey, Merchant
    from checkout.services import DEMO_MERCHANT, issue_api_key
    from lightning.models import Invoice

    have = Invoice.objects.count()
    if have < args.n:
        print(f"{have:,} invoices: seeding {args.n - have:,} ...", flush=True)
        subprocess.run(
            [sys.executable, "bench/seed_invoices.py", "-n", str(args.n - have)],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    merchant = Merchant.objects.get(name=DEMO_MERCHANT)
    _, key = issue_api_key(merchant, ApiKey.Kind.ADMIN, "explain")
    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_API_KEY=key)

    from lightning import reactions
    from lightning import services as lightning_services
    from lightning.backends import get_backend
    from lightning.backends.devnode import DevNodeSubscription
    from lightning.models import DevNodeCounter
    from lightning.watcher import HoldTracker

    def create():
        response = client.post("/api/checkout/invoices", CREATE_BODY, "application/json")
        assert response.status_code == 201, response.content
        paths["status"] = f"/checkout/{response.json()['invoiceId']}/status"

    def status():
        response = client.get(paths["status"])
        assert response.status_code == 200, response.content

    from checkout.models import CheckoutInvoice

    oldest = CheckoutInvoice.objects.order_by("pk").values_list("public_id", flat=True).first()

    def old_status():
        assert client.get(f"/checkout/{oldest}/status").status_code == 200

    def sweep(name):
        def run():
            from checkout.receipts import send_due_receipts
            from shopify_bridge.push import push_due_orders
            from wallets.services import resolve_pending_payments
            from webhooks.services import claim_due, send_disabled_notices

            {
                "expire_invoices": lightning_services.expire_invoices,
                "reconcile_invoices": lightning_services.reconcile_invoices,
                "reconcile_invoices(full) at a watcher's first start": lambda: (
                    lightning_services.reconcile_invoices(full=True)
                ),
                "cancel_expiring_hold_invoices": lightning_services.cancel_expiring_hold_invoices,
                "retry_pending_reactions": reactions.retry_pending_reactions,
                "send_due_receipts": send_due_receipts,
                "webhooks claim_due": claim_due,
                "webhooks send_disabled_notices": send_disabled_notices,
                "wallets resolve_pending_payments": resolve_pending_payments,
                "shopify push_due_orders": push_due_orders,
                "hold tracker scan": lambda: HoldTracker(get_backend(), "explain")._scan(),
                "dev node settlement stream poll": lambda: DevNodeSubscription(
                    DevNodeCounter.objects.get(pk=1).last_settle_index
                ).next_batch(timeout=0),
            }[name]()

        return run

    paths = {}
    steps = [
        ("create (POST /api/checkout/invoices)", create),
        ("status of an open invoice (GET /checkout/{id}/status)", status),
        ("status of an old invoice", old_status),
    ] + [
        (f"beat: {name}", sweep(name))
        for name in (
            "expire_invoices",
            "reconcile_invoices",
            "cancel_expiring_hold_invoices",
            "retry_pending_reactions",
            "send_due_receipts",
            "webhooks claim_due",
            "webhooks send_disabled_notices",
            "wallets resolve_pending_payments",
            "shopify push_due_orders",
            "hold tracker scan",
            "dev node settlement stream poll",
            "reconcile_invoices(full) at a watcher's first start",
        )
    ]
    print(f"{connection.vendor}: {Invoice.objects.count():,} invoices", flush=True)
    flagged = []
    for label, step in steps:
        reset_queries()  # the log keeps 9,000 queries: a full one captures nothing
        with CaptureQueriesContext(connection) as captured:
            step()
        print(f"\n== {label}: {len(captured.captured_queries)} queries", flush=True)
        for query in captured.captured_queries:
            sql = query["sql"]
            verb = sql.lstrip().split(None, 1)[0].upper()
            if verb not in ("SELECT", "UPDATE", "DELETE"):
                continue
            with transaction.atomic():  # EXPLAIN ANALYZE runs an UPDATE: undo it
                lines = plan(connection, sql)
                transaction.set_rollback(True)
            bad = scans(connection, lines)
            mark = "SCAN " if bad else "     "
            print(f"{mark}{query['time']:>6}s  {sql[:160]}", flush=True)
            if args.verbose or bad:
                for line in lines:
                    print(f"           | {line}")
            if bad:
                flagged.append((label, sql[:160], bad))
    print(f"\n{len(flagged)} queries read a whole big table:")
    for label, sql, bad in flagged:
        print(f"  {label}: {sql}\n    {'; '.join(bad)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("-n", type=int, default=1_000_000, help="invoices to seed")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--settle", type=float, default=10.0, help="wait after the start")
    parser.add_argument("--rounds", type=int, default=3, help="turns of empty and seeded")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the seeded database of an earlier run"
    )
    parser.add_argument("--pg-name", default="zg_bench_growth", help="PostgreSQL database")
    parser.add_argument("--data-dir", help="default /tmp/zapgate-bench-growth-<database>")
    parser.add_argument("--explain", action="store_true", help="query plans, no server")
    parser.add_argument("-v", "--verbose", action="store_true", help="every plan in full")
    args = parser.parse_args()
    if args.explain:
        explain(args)
    else:
        run_growth(args)


if __name__ == "__main__":
    main()
