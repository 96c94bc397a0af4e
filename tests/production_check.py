#!/usr/bin/env python
"""The production profile, end to end: clone this repository (what is committed) into a
scratch folder, start the processes `deploy/Procfile` names (uvicorn, a Celery worker,
beat) on PostgreSQL and Redis, and drive one payment through them: an invoice made over
the API, its hosted page open in headless Chromium, paid, and the page turning "Paid" by
push (its socket open, no status poll). CI runs it (.ci/run); exits non-zero on failure.

usage: production_check.py [--database-url URL] [--redis-url URL]
The database is created (and dropped afterwards); it needs the test requirements (the page
is driven by Playwright with Debian's Chromium). The dev node pays (ZAPGATE_DEV_MODE=true,
for `POST /api/dev/pay` only): everything else is the production profile.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent  # the checkout this file is in
sys.path.insert(0, str(ROOT))
from tests.page_push import time_to_paid  # noqa: E402

BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile(path: Path) -> dict[str, str]:
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def expand(command: str, env: dict) -> list[str]:
    """`${NAME:-default}` and `$NAME` as a shell would, then the program from this venv."""

    def value(match):
        return env.get(match.group(1)) or (match.group(2) or "")

    command = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", value, command)
    argv = shlex.split(command)
    program = BIN / argv[0]
    return [str(program) if program.exists() else argv[0], *argv[1:]]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="zapgate-production-"))
    clone = scratch / "zapgate"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    db_name = f"zapgate_production_{os.getpid()}"
    admin_url = args.database_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}"')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    database_url = admin_url.rsplit("/", 1)[0] + "/" + db_name
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTEST"))},
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": args.redis_url,
        "CACHE_URL": args.redis_url.rsplit("/", 1)[0] + "/12",
        "SECRET_KEY": "production-check-" + "x" * 40,
        "PUBLIC_BASE_URL": base,
        "ALLOWED_HOSTS": "127.0.0.1",
        "ZAPGATE_DATA_DIR": str(scratch / "data"),
        "ZAPGATE_DEV_MODE": "true",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    entries = procfile(clone / "deploy" / "Procfile")
    processes = []
    logs = {}
    try:
        release = expand(entries.pop("release"), env)
        subprocess.run(release, cwd=clone, env=env, check=True, capture_output=True)
        key = subprocess.run(
            [sys.executable, "manage.py", "create_merchant", "Production check"],
            cwd=clone,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        for name, command in entries.items():
            logs[name] = scratch / f"{name}.log"
            processes.append(
                subprocess.Popen(
                    expand(command, env),
                    cwd=clone,
                    env=env,
                    stdout=open(logs[name], "wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        def healthy():
            for proc in processes:
                if proc.poll() is not None:
                    raise SystemExit(f"{proc.args[0]} exited; logs in {scratch}")
            try:
                return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 90, "the production profile to answer /api/health with 200")
        made = httpx.post(
            f"{base}/api/checkout/invoices",
            headers={"X-Api-Key": key},
            json={"amount": "21", "currency": "SAT", "description": "production check"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        checkout = made.json()
        took = drive_page(base, checkout)
        status = httpx.get(f"{base}/checkout/{checkout['invoiceId']}/status").json()
        assert status["status"] == "paid", status
        print(
            f"production profile (uvicorn, Celery worker, beat; PostgreSQL, Redis): "
            f"checkout {checkout['invoiceId']} paid; the page showed it by push in {took:.0f} ms"
        )
        return 0
    finally:
        for proc in processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for name, path in logs.items():
            if sys.exc_info()[0] is not None and path.exists():
                print(f"--- {name} log (last lines) ---\n{path.read_text()[-3000:]}")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def drive_page(base: str, checkout: dict) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            polls = []
            page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/status") else 0)
            page.goto(f"{base}/checkout/{checkout['invoiceId']}")
            took = time_to_paid(page, checkout["lightningInvoice"])
            assert not polls, f"the page polled while its socket was open: {polls}"
            return took
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
