"""L402 benchmark: what token verification and the reverse proxy cost.

    .venv/bin/python bench/l402.py [--database postgres|sqlite] [--seconds 6] [--rounds 6]
        [--workers 2] [--threads 4] [--concurrency 1,8]

Makes a fresh database (zg_bench_l402 on PostgreSQL), starts the gateway under gunicorn
and a minimal upstream API (also gunicorn) on loopback ports, buys a token through the
dev node, then measures requests/s and p50/p99 latency of:

- GET /api/l402/demo with a valid token, against the same view without the L402 gate
  (mounted for this run only, next to it, at /api/l402/demo-open);
- GET /l402/proxy/{id}/echo with a valid token, against GET /echo on the upstream itself.

The two sides of a comparison run in alternating short rounds, so a change of load on the
machine hits both alike. Each client thread keeps one HTTP/1.1 keep-alive connection.
In process (best of five runs, steady on a busy machine) it also times the token check
(decode, signature, preimage, caveats) and whole requests through Django's WSGI handler,
with and without the gate.
"""

import argparse
import http.client
import importlib.util
import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# This file is named like the l402 app: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("bench_setup", BENCH / "_setup.py")
bench_setup = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_setup)

# Mounts the ungated twin of the demo view (in each gunicorn worker before its first
# request, and in this process for the in-process figures).
GATEWAY_CONF = """
def post_worker_init(worker=None):
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from l402 import urls

    class OpenDemo(APIView):
        def get(self, request):
            return Response(
                {"message": "Payment received: this answer was paid with Lightning.",
                 "resource": "demo"}
            )

    # Right after the demo route, so URL resolution costs both the same.
    demo = next(i for i, p in enumerate(urls.urlpatterns) if p.name == "l402-demo")
    urls.urlpatterns.insert(demo + 1, path("api/l402/demo-open", OpenDemo.as_view()))
"""

UPSTREAM_APP = """
import json

def application(environ, start_response):
    body = json.dumps({"path": environ["PATH_INFO"], "query": environ["QUERY_STRING"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, port: int, headers: dict):
        self.port, self.headers = port, headers
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def run_phase(port, path, headers, concurrency, seconds):
    """`concurrency` threads, one connection each, for `seconds`: (latencies, elapsed, errors)."""
    latencies, errors, lock = [], [], threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker():
        client = Client(port, headers)
        client.get(path)  # warm the connection
        mine, my_errors = [], []
        barrier.wait()
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            status, body = client.get(path)
            mine.append(time.perf_counter() - t0)
            if status != 200:
                my_errors.append(f"{status} {body[:200]!r}")
        with lock:
            latencies.extend(mine)
            errors.extend(my_errors)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - began, errors


def compare(rows, concurrency, seconds, rounds):
    """Both variants in alternating short rounds, so a load change on the machine hits
    both alike. Per variant: (req/s, p50, p99, errors)."""
    totals = [([], 0.0, []) for _ in rows]
    for _ in range(rounds):
        for index, (_, port, path, headers) in enumerate(rows):
            latencies, elapsed, errors = run_phase(
                port, path, headers, concurrency, seconds / rounds
            )
            all_latencies, all_elapsed, all_errors = totals[index]
            all_latencies.extend(latencies)
            all_errors.extend(errors)
            totals[index] = (all_latencies, all_elapsed + elapsed, all_errors)
    return [
        (
            len(latencies) / elapsed,
            bench_setup.percentile(latencies, 0.5),
            bench_setup.percentile(latencies, 0.99),
            errors,
        )
        for latencies, elapsed, errors in totals
    ]


def in_process_costs(macaroon: str, preimage: str, rounds: int = 2000) -> dict[str, float]:
    """Seconds per call, best of five runs (steady even on a busy machine): the token check
    (first time and reused), and whole requests through Django's WSGI handler."""
    import io
    import timeit

    from django.core.handlers.wsgi import WSGIHandler
    from django.test import RequestFactory

    from l402 import macaroons

    conf: dict = {}
    exec(textwrap.dedent(GATEWAY_CONF), conf)
    conf["post_worker_init"]()
    scope = macaroons.RequestScope(resource="demo", method="GET", path="/api/l402/demo")
    handler, factory = WSGIHandler(), RequestFactory(HTTP_HOST="127.0.0.1")
    token = f"L402 {macaroon}:{preimage}"
    environs = {
        "open": factory.get("/api/l402/demo-open").environ,
        "token": factory.get("/api/l402/demo", HTTP_AUTHORIZATION=token).environ,
    }

    def request(name):
        status = []
        handler({**environs[name], "wsgi.input": io.BytesIO()}, lambda s, h: status.append(s))
        assert status == ["200 OK"], status

    def best(call):
        return min(timeit.repeat(call, number=rounds, repeat=5)) / rounds

    return {
        "check, first time": best(
            lambda: macaroons.check_scope(macaroons.verify.__wrapped__(macaroon, preimage), scope)
        ),
        "check, reused": best(
            lambda: macaroons.check_scope(macaroons.verify(macaroon, preimage), scope)
        ),
        "request, unprotected": best(lambda: request("open")),
        "request, L402 token": best(lambda: request("token")),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--seconds", type=float, default=6.0, help="per figure")
    parser.add_argument("--rounds", type=int, default=6, help="alternations per comparison")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--concurrency", default="1,8")
    args = parser.parse_args()

    os.environ["L402_PROXY_ALLOW_PRIVATE_TARGETS"] = "True"  # the upstream is on loopback
    label = bench_setup.configure("l402", args.database)
    data_dir = Path(os.environ["ZAPGATE_DATA_DIR"])
    (data_dir / "gateway_conf.py").write_text(textwrap.dedent(GATEWAY_CONF))
    (data_dir / "bench_upstream.py").write_text(textwrap.dedent(UPSTREAM_APP))

    from checkout.services import create_merchant
    from l402.services import proxies
    from lightning.backends import get_backend

    merchant, _ = create_merchant("Bench API seller")
    procs = []
    try:
        upstream, upstream_port = bench_setup.start_gunicorn(
            "bench_upstream:application",
            args.workers,
            args.threads,
            "upstream",
            "--chdir",
            str(data_dir),
        )
        procs.append(upstream)
        proxy = proxies.create_proxy(
            merchant,
            name="Bench upstream",
            target_base_url=f"http://127.0.0.1:{upstream_port}",
            default_price_sats=5,
        )
        gateway, port = bench_setup.start_gunicorn(
            "config.wsgi",
            args.workers,
            args.threads,
            "gateway",
            "--config",
            str(data_dir / "gateway_conf.py"),
        )
        procs.append(gateway)

        def buy(path):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path)
            challenge = json.loads(conn.getresponse().read())
            preimage = get_backend().pay_invoice(challenge["invoice"]).preimage
            return challenge["macaroon"], preimage

        demo_token = buy("/api/l402/demo")
        proxy_path = f"/l402/proxy/{proxy.proxy_id}/echo?x=1"
        proxy_token = buy(proxy_path)
        time.sleep(2)  # let every gunicorn worker finish booting before timing anything
        costs = in_process_costs(*demo_token)

        def auth(token):
            return {"Authorization": f"L402 {token[0]}:{token[1]}"}

        comparisons = [
            (
                "protected resource",
                ("unprotected GET /api/l402/demo-open", port, "/api/l402/demo-open", {}),
                ("L402 token  GET /api/l402/demo", port, "/api/l402/demo", auth(demo_token)),
            ),
            (
                "reverse proxy",
                ("direct      GET upstream /echo", upstream_port, "/echo?x=1", {}),
                ("via proxy   GET /l402/proxy/{id}/echo", port, proxy_path, auth(proxy_token)),
            ),
        ]
        levels = [int(c) for c in args.concurrency.split(",")]
        print(
            f"L402 benchmark ({label}, gunicorn gthread {args.workers}x{args.threads}, "
            f"dev node, loopback upstream), {args.seconds:g} s per figure"
        )
        print("in process, best of 5 (us):", end="")
        print(", ".join(f" {name} {cost * 1e6:.1f}" for name, cost in costs.items()))
        added = costs["request, L402 token"] - costs["request, unprotected"]
        print(
            f"  -> the L402 gate adds {added * 1e6:.1f} us per request "
            f"({100 * added / costs['request, unprotected']:.1f}% of the unprotected request)"
        )
        header = (
            f"{'request':42} {'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
        )
        for title, *rows in comparisons:
            print(f"\n{title}")
            print(header)
            for concurrency in levels:
                results = compare(rows, concurrency, args.seconds, args.rounds)
                for (name, *_), (rate, p50, p99, errors) in zip(rows, results, strict=True):
                    print(
                        f"{name:42} {concurrency:>5} {rate:>8.0f} {p50 * 1000:>8.2f} "
                        f"{p99 * 1000:>8.2f} {len(errors):>7}",
                        flush=True,
                    )
                    if errors:
                        print(f"    first error: {errors[0]}")
                (base_rate, base_p50, *_), (rate, p50, *_) = results
                print(
                    f"{'  -> cost (throughput, p50 ms)':42} {concurrency:>5} "
                    f"{100 * (1 - rate / base_rate):>7.1f}% {(p50 - base_p50) * 1000:>+8.2f}"
                )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


if __name__ == "__main__":
    main()
