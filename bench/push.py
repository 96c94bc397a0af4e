"""Push benchmark: how soon a payment reaches an open page and an LNbits socket, and what
idle sockets cost.

    .venv/bin/python bench/push.py [--sockets 1000] [--payments 20] [--web-processes 1]

Starts the stack as `make run` does (scripts/run.py: uvicorn, a Celery worker with the
watcher and beat), in a data folder of its own; DATABASE_URL and CELERY_BROKER_URL from the
environment choose the stack (default: SQLite and the embedded broker, pushing through the
database; with Redis, through channels-redis). Then:
- page: the hosted checkout page in headless Chromium (Debian's), paid --payments times from
  the page itself; the time from sending the payment to the page showing "Paid" (one clock);
- LNbits socket: `/api/v1/ws/{key}` open, invoices paid one after the other; the time from
  sending the payment to the socket's message;
- idle sockets: the web processes' resident memory before and after opening --sockets
  checkout sockets from as many loopback addresses as the per-address bound requires
  (127.0.0.0/8 is all loopback), and the same after closing them.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from _setup import free_port, percentile  # noqa: E402

from tests.page_push import time_to_paid  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def rss_mb(pids) -> float:
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def web_pids(root_pid: int) -> list[int]:
    """uvicorn's worker processes under the stack (the processes that hold the sockets)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()[1:]]
    children = {}
    for pid, ppid, args in rows:
        children.setdefault(int(ppid), []).append((int(pid), args))
    found, todo = [], [root_pid]
    while todo:
        for pid, args in children.get(todo.pop(), []):
            todo.append(pid)
            if "uvicorn" in args:
                found.append(pid)
    masters = {pid for pid in found if any(p == pid for p, _ in children.get(pid, []))}
    return [pid for pid in found if pid not in masters] or found


def start_stack(args, data_dir: Path):
    port = free_port()
    env = dict(
        os.environ,
        PORT=str(port),
        ZAPGATE_DATA_DIR=str(data_dir),
        WEB_PROCESSES=str(args.web_processes),
        PYTHONUNBUFFERED="1",
    )
    log = open(data_dir / "stack.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "scripts/run.py"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = (data_dir / "stack.log").read_text(errors="replace")
        key = re.search(r"^\s+(zg_admin_\S+)$", text, re.MULTILINE)
        try:
            healthy = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code
        except httpx.HTTPError:
            healthy = None
        if key and healthy == 200:
            return proc, port, key.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"the stack exited; see {data_dir / 'stack.log'}")
        time.sleep(0.3)
    raise SystemExit("the stack did not start")


def new_checkout(base, key) -> dict:
    made = httpx.post(
        f"{base}/api/checkout/invoices",
        headers={"X-Api-Key": key},
        json={"amount": "21", "currency": "SAT"},
        timeout=30,
    )
    made.raise_for_status()
    return made.json()


def page_latencies(base, key, count) -> list[float]:
    from playwright.sync_api import sync_playwright

    latencies = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new", "--disable-gpu"]
        )
        page = browser.new_page()
        for _ in range(count):
            checkout = new_checkout(base, key)
            page.goto(f"{base}/checkout/{checkout['invoiceId']}")
            latencies.append(time_to_paid(page, checkout["lightningInvoice"]))
        browser.close()
    return latencies


async def lnbits_latencies(port, key, count) -> list[float]:
    base = f"http://127.0.0.1:{port}"
    latencies = []
    async with (
        httpx.AsyncClient(base_url=base, headers={"X-Api-Key": key}, timeout=30) as client,
        websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/{key}") as socket,
    ):
        for _ in range(count):
            made = (await client.post("/api/v1/payments", json={"out": False, "amount": 5})).json()
            start = time.perf_counter()
            await client.post("/api/dev/pay", json={"bolt11": made["bolt11"]})
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 15))
                if message["payment"]["payment_hash"] == made["payment_hash"]:
                    break
            latencies.append((time.perf_counter() - start) * 1000)
    return latencies


async def idle_sockets(port, key, count, per_address, pids):
    base = f"http://127.0.0.1:{port}"
    invoices = [new_checkout(base, key)["invoiceId"] for _ in range(10)]
    before = rss_mb(pids)
    sockets = []
    for i in range(count):
        address = f"127.0.{1 + i // (per_address * 250)}.{1 + (i // per_address) % 250}"
        url = f"ws://127.0.0.1:{port}/ws/checkout/{invoices[i % len(invoices)]}"
        # The client's own address: bind the connection's source to a loopback alias.
        sock = __import__("socket").create_connection(
            ("127.0.0.1", port), source_address=(address, 0)
        )
        socket = await websockets.connect(url, sock=sock, open_timeout=30)
        await socket.recv()  # the status: the socket is open and joined
        sockets.append(socket)
    await asyncio.sleep(2)
    opened = rss_mb(pids)
    for socket in sockets:
        await socket.close()
    await asyncio.sleep(2)
    closed = rss_mb(pids)
    return before, opened, closed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--payments", type=int, default=20)
    parser.add_argument("--web-processes", type=int, default=1)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="zapgate-bench-push-"))
    proc, port, key = start_stack(args, data_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        transport = (
            "channels-redis"
            if os.environ.get("CELERY_BROKER_URL", "").startswith("redis")
            else "the database (embedded)"
        )
        db = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
        print(
            f"push: make run stack on {db}, pushing through {transport}, "
            f"{args.web_processes} web process(es)",
            flush=True,
        )
        page = page_latencies(base, key, args.payments)
        print(
            f"page shows paid after the payment ({len(page)}): "
            f"p50 {statistics.median(page):.0f} ms, "
            f"p90 {percentile(page, 0.9):.0f} ms, max {max(page):.0f} ms",
            flush=True,
        )
        lnbits = asyncio.run(lnbits_latencies(port, key, args.payments))
        print(
            f"LNbits socket message after the payment ({len(lnbits)}): "
            f"p50 {statistics.median(lnbits):.0f} ms, p90 {percentile(lnbits, 0.9):.0f} ms, "
            f"max {max(lnbits):.0f} ms",
            flush=True,
        )
        pids = web_pids(proc.pid)
        per_address = int(os.environ.get("PUSH_MAX_SOCKETS_PER_ADDRESS", "20"))
        before, opened, closed = asyncio.run(
            idle_sockets(port, key, args.sockets, per_address, pids)
        )
        print(
            f"{args.sockets} idle sockets: web process RSS {before:.0f} MB before, "
            f"{opened:.0f} MB open (+{opened - before:.0f} MB, "
            f"{(opened - before) * 1024 / args.sockets:.0f} KB each), "
            f"{closed:.0f} MB after closing",
            flush=True,
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
