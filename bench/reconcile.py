"""Reconciliation benchmark: what a watcher start costs with a large backlog of open invoices.

    .venv/bin/python bench/reconcile.py [--database sqlite|postgres|both]
                                        [--backend devnode|lnd|both] [-n 10000]

N open invoices (a few of them hold invoices) are made on the node: the dev node, or the
simulated LND over real gRPC and TLS (each lookup a network round trip, as with LND). Then:
- a routine start (a settle index is stored, the stream replays what it missed): the node is
  asked only about open hold invoices, whose states the stream never carries;
- a first start (no settle index yet: LND replays nothing from 0): every open invoice is
  looked up, in pages, and the lease is renewed after each page, so a standby never takes
  over in the middle. The figure to watch is the longest gap between two renewals, which
  must stay well under WATCHER_LEASE_SECONDS (15 s).
"""

import argparse
import time


def run(database: str, backend_name: str, n: int) -> None:
    from _setup import configure

    label = configure("reconcile", database)
    from django.conf import settings

    from lightning import services
    from lightning.backends import get_backend, reset_backend

    if backend_name == "lnd":
        import tempfile
        from pathlib import Path

        from lightning.simnode import SimNode

        node = SimNode(Path(tempfile.mkdtemp(prefix="zapgate-bench-simnode-"))).start()
        settings.LIGHTNING_BACKEND = "lnd"
        settings.LND_GRPC_HOST = node.address
        settings.LND_TLS_CERT = str(node.cert_path)
        settings.LND_MACAROON = str(node.macaroon_path)
        reset_backend()
        label += " + simulated LND (gRPC)"
    else:
        label += " + dev node"
    backend = get_backend()
    holds = max(1, n // 100)
    started = time.perf_counter()
    for i in range(n - holds):
        services.create_invoice(1000, f"open {i}")
    for i in range(holds):
        services.create_hold_invoice(f"{i:064x}", 1000, f"hold {i}")
    made = time.perf_counter() - started

    lookups = 0
    real_lookup = backend.lookup_invoice

    def counting_lookup(payment_hash):
        nonlocal lookups
        lookups += 1
        return real_lookup(payment_hash)

    backend.lookup_invoice = counting_lookup
    renewals = []

    def renew():
        renewals.append(time.perf_counter())

    print(f"{label}: {n} open invoices ({holds} hold), made in {made:.1f} s")
    for name, full in (("routine start", False), ("first start", True)):
        lookups, renewals[:] = 0, []
        began = time.perf_counter()
        services.reconcile_invoices(full=full, between_pages=renew)
        took = time.perf_counter() - began
        marks = [began, *renewals]
        gap = max((b - a for a, b in zip(marks, marks[1:], strict=False)), default=took)
        print(
            f"  {name:13}: {lookups:6} node lookups in {took:6.2f} s, "
            f"{len(renewals):3} lease renewals, longest gap {gap:.2f} s "
            f"(lease {settings.WATCHER_LEASE_SECONDS:g} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--backend", choices=["devnode", "lnd", "both"], default="both")
    parser.add_argument("-n", type=int, default=10_000)
    args = parser.parse_args()
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    backends = ["devnode", "lnd"] if args.backend == "both" else [args.backend]
    runs = [(database, backend) for database in databases for backend in backends]
    for database, backend in runs:
        if len(runs) > 1:  # each in a fresh process: Django is set up once per process
            import subprocess
            import sys

            command = [sys.executable, __file__, "--database", database, "--backend", backend]
            subprocess.run([*command, "-n", str(args.n)], check=True)
        else:
            run(database, backend, args.n)


if __name__ == "__main__":
    main()
