"""Wallet API benchmark (LNbits payments API): invoices created per second, and outgoing
payments per second, inside the gateway (another merchant's invoices) and through the node
(invoices of a payee elsewhere), with latency p50/p99, against gunicorn.

    .venv/bin/python bench/wallet.py [--database postgres|sqlite] [--seconds 10]
        [--workers 4] [--threads 4] [--concurrency 1,8] [--phases create,internal,node]

Makes a fresh database (zg_bench_wallet on PostgreSQL), two merchants, funds the payer's
wallet by paying one large invoice from outside, and pre-creates the invoices to pay (the
payee's through the API's service, the remote ones on the node), so each phase times only
the calls it names. `node` runs against the simulated LND over gRPC (started here, with
its remote payee); the other phases use the dev node.
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
# bench/checkout.py's load generator, loaded under another name: "checkout" is the app.
_spec = importlib.util.spec_from_file_location("bench_checkout", BENCH / "checkout.py")
bench_checkout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_checkout)
run_phase = bench_checkout.run_phase

FUND_SATS = 50_000_000
PAY_SATS = 10


def setup(database: str):
    from _setup import configure

    label = configure("wallet", database)
    from checkout.models import ApiKey
    from checkout.services import create_merchant, issue_api_key

    payer, admin_key = create_merchant("Bench Payer")
    payee, _ = create_merchant("Bench Payee")
    _, invoice_key = issue_api_key(payer, ApiKey.Kind.INVOICE, "bench")
    return label, payer, payee, admin_key, invoice_key


def fund(merchant, sats: int, pay_from_outside) -> None:
    from lightning import services as lightning_services
    from wallets import services as wallets

    payment = wallets.create_invoice(wallets.wallet_for(merchant), sats, memo="funding")
    pay_from_outside(payment.bolt11)
    lightning_services.refresh_from_node(payment.invoice)
    payment.refresh_from_db()
    assert payment.status == "success", payment.status


def payee_invoices(merchant, count: int) -> list[str]:
    from wallets import services as wallets

    wallet = wallets.wallet_for(merchant)
    return [wallets.create_invoice(wallet, PAY_SATS).bolt11 for _ in range(count)]


def phase(name, base_url, key, concurrency, seconds, make_request):
    rate, p50, p99, errors = run_phase(base_url, key, concurrency, seconds, make_request)
    print(
        f"  {name:<34} c={concurrency:<3} {rate:8.1f}/s  p50 {p50 * 1000:6.1f} ms"
        f"  p99 {p99 * 1000:6.1f} ms  errors {len(errors)}"
        + (f" (first: {errors[0]})" if errors else ""),
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--phases", default="create,internal,node")
    parser.add_argument("--invoices", type=int, default=4000, help="pre-made, per pay phase")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    phases = args.phases.split(",")

    label, payer, payee, admin_key, invoice_key = setup(args.database)
    from _setup import start_gunicorn

    from lightning.backends import get_backend

    print(f"wallet API, {label}, gunicorn gthread {args.workers}x{args.threads}", flush=True)
    if "create" in phases or "internal" in phases:
        fund(payer, FUND_SATS, lambda bolt11: get_backend().pay_invoice(bolt11))
        proc, port = start_gunicorn("config.wsgi", args.workers, args.threads, "wallet")
        base_url = f"http://127.0.0.1:{port}"
        try:
            if "create" in phases:
                body = json.dumps({"out": False, "amount": 100, "memo": "bench"})

                def create(client, n):
                    status, answer = client.request("POST", "/api/v1/payments", body)
                    return status == 201, f"{status} {answer[:200]!r}"

                for concurrency in concurrencies:
                    phase(
                        "create invoice (dev node)",
                        base_url,
                        invoice_key,
                        concurrency,
                        args.seconds,
                        create,
                    )
            if "internal" in phases:
                for concurrency in concurrencies:
                    invoices = payee_invoices(payee, args.invoices)
                    pay_phase_once(
                        "pay internally", base_url, admin_key, concurrency, args.seconds, invoices
                    )
        finally:
            proc.terminate()
            proc.wait(10)
    if "node" in phases:
        run_node_phase(args, concurrencies, payer, admin_key)


def pay_phase_once(name, base_url, key, concurrency, seconds, invoices):
    def pay(client, n):
        if n >= len(invoices):
            return False, "ran out of invoices: raise --invoices"
        body = json.dumps({"out": True, "bolt11": invoices[n]})
        status, answer = client.request("POST", "/api/v1/payments", body)
        return status == 201, f"{status} {answer[:200]!r}"

    phase(name, base_url, key, concurrency, seconds, pay)


def run_node_phase(args, concurrencies, payer, admin_key):
    """Payments to a payee elsewhere, through the simulated LND over gRPC."""
    from _setup import start_gunicorn

    from lightning import simnode
    from lightning.backends import reset_backend

    directory = Path(tempfile.mkdtemp(prefix="zapgate-bench-simnode-"))
    node = simnode.SimNode(directory).start()
    lnd_env = {
        "LIGHTNING_BACKEND": "lnd",
        "LND_GRPC_HOST": node.address,
        "LND_TLS_CERT": str(node.cert_path),
        "LND_MACAROON": str(node.macaroon_path),
    }
    os.environ.update(lnd_env)
    from django.conf import settings

    for name, value in lnd_env.items():
        setattr(settings, name, value)
    reset_backend()
    try:
        fund(payer, FUND_SATS, lambda bolt11: simnode.control_pay(directory, bolt11))
        proc, port = start_gunicorn("config.wsgi", args.workers, args.threads, "wallet-lnd")
        base_url = f"http://127.0.0.1:{port}"
        try:
            for concurrency in concurrencies:
                invoices = [
                    node.create_remote_invoice(PAY_SATS * 1000, "bench")["bolt11"]
                    for _ in range(args.invoices)
                ]
                pay_phase_once(
                    "pay through the node (sim LND)",
                    base_url,
                    admin_key,
                    concurrency,
                    args.seconds,
                    invoices,
                )
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        node.stop()


if __name__ == "__main__":
    main()
