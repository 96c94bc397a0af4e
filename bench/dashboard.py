"""The merchant site on a shop with many invoices: the CSV export of all of them (streamed),
and the dashboard and invoice list pages, served by gunicorn as in production.

    .venv/bin/python bench/dashboard.py [--database sqlite|postgres] [-n 250000] [--rounds 3]

Seeds `-n` past checkout invoices with bench/seed_invoices.py (the demo merchant gets 40%
of them: 100,000 for the default), signs in a staff user of the demo merchant, and prints:
the export's time to first byte, total time, rows and size, and the peak memory (VmHWM) of
the web worker that streamed it; then the median time of the dashboard (7, 30 and 90
days) and of the first page of the invoice list, filtered and not.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import ROOT, configure, descendants, start_gunicorn  # noqa: E402


def peak_rss_kib(pids) -> int:
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak


def session_cookie(username: str) -> str:
    """A signed-in session of `username`, as the login form would make it."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.get(username=username)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"sessionid={session.session_key}"


def fetch(port: int, path: str, cookie: str) -> tuple[float, float, int, int]:
    """(seconds to the first byte, total seconds, lines, bytes) of one GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse()
    first = response.read(1)
    first_byte = time.perf_counter() - started
    size, lines = len(first), first.count(b"\n")
    while chunk := response.read(65536):
        size += len(chunk)
        lines += chunk.count(b"\n")
    total = time.perf_counter() - started
    assert response.status == 200, (path, response.status)
    conn.close()
    return first_byte, total, lines, size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("-n", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    label = configure("dashboard", args.database)
    print(f"seeding {args.n:,} invoices ({label})...", flush=True)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "bench/seed_invoices.py", "-n", str(args.n), "--seed", "7"],
        cwd=ROOT,
        env=dict(os.environ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)

    from checkout.models import CheckoutInvoice, Merchant
    from checkout.services import DEMO_MERCHANT
    from checkout.staff import create_merchant_user

    merchant = Merchant.objects.get(name=DEMO_MERCHANT)
    rows = CheckoutInvoice.objects.filter(merchant=merchant).count()
    create_merchant_user("bench", merchant, "bench passphrase 1")
    cookie = session_cookie("bench")
    proc, port = start_gunicorn("config.wsgi", 1, 4, "dashboard")
    try:
        print(f"\n{label}, {rows:,} invoices of one merchant, gunicorn 1 worker x 4 threads")
        print("CSV export of every invoice (/dashboard/invoices.csv):")
        for round_ in range(args.rounds):
            first, total, lines, size = fetch(port, "/dashboard/invoices.csv", cookie)
            peak = peak_rss_kib(descendants(proc.pid)[1:])
            print(
                f"  round {round_ + 1}: first byte {first * 1000:.0f} ms, all {total:.1f} s, "
                f"{lines - 1:,} rows, {size / 1e6:.1f} MB, {lines / total:,.0f} rows/s, "
                f"worker peak RSS {peak / 1024:.0f} MiB"
            )
        print("Pages (median of rounds):")
        for path in (
            "/dashboard/?days=7",
            "/dashboard/?days=30",
            "/dashboard/?days=90",
            "/dashboard/invoices",
            "/dashboard/invoices?status=paid",
            "/dashboard/invoices?q=coffee",
        ):
            times = [fetch(port, path, cookie)[1] for _ in range(args.rounds)]
            print(f"  {path:<36} {statistics.median(times) * 1000:7.0f} ms")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
