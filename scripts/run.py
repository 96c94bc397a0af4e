#!/usr/bin/env python
"""`make run`: migrate, seed the demo merchant, then run the web server (uvicorn: HTTP and
WebSockets) and a Celery worker (with the invoice watcher and, as a thread, Celery beat)
together; Ctrl-C stops all of them. README's Production section says what to run instead."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Embedded defaults for a local demo; anything already in the environment wins.
os.environ.setdefault("WORKER_BEAT", "true")  # beat inside the one worker: a process less
os.environ.setdefault("ZAPGATE_DEV_MODE", "true")
os.environ.setdefault("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
os.environ.setdefault("L402_PROXY_ALLOW_PRIVATE_TARGETS", "true")
os.environ.setdefault("REFUNDS_ALLOW_PRIVATE_TARGETS", "true")
PORT = os.environ.setdefault("PORT", "8000")
os.environ.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{PORT}")


# uvicorn as README's Production section runs it: httptools, uvloop, the sans-I/O
# WebSocket protocol (the lightest per idle socket), idle connections kept 75 s for clients'
# connection pools (uvicorn's 5 s default reset connections that clients reused).
SERVER_OPTIONS = [
    "--http",
    "httptools",
    "--loop",
    "uvloop",
    "--ws",
    "websockets-sansio",
    "--timeout-keep-alive",
    "75",
    "--no-access-log",
    "--log-level",
    "warning",
]


def manage(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:  # say why, not only that it failed
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"manage.py {' '.join(args)} failed (exit {result.returncode})")
    return result.stdout


def main() -> int:
    manage("migrate", "--noinput")
    seeded = manage("seed_demo").strip().splitlines()
    demo_key = seeded[-1]
    _, username, password = next(line for line in seeded if line.startswith("login ")).split()
    # Before the processes start: they would race to create the embedded broker's queue.
    manage("declare_queues")
    commands = {
        # One process answers HTTP and WebSockets (config.asgi); see README, Production.
        # One web process by default: with the worker, the demo fits in the memory of
        # LNbits' two processes; WEB_PROCESSES=2 uses both cores of a small machine.
        "web": [
            str(BIN / "uvicorn"),
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            PORT,
            "--workers",
            os.environ.get("WEB_PROCESSES", "1"),
            *SERVER_OPTIONS,
        ],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--pool",
            os.environ.get("WORKER_POOL", "threads"),
            "--concurrency",
            os.environ.get("WORKER_CONCURRENCY", "4"),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
    }
    procs = {name: subprocess.Popen(cmd, cwd=ROOT) for name, cmd in commands.items()}
    base = os.environ["PUBLIC_BASE_URL"]
    print(
        f"\nZapgate is running (dev node, SQLite, embedded broker).\n"
        f"  Health:    {base}/api/health\n"
        f"  API docs:  {base}/docs\n"
        f"  Merchant site of the demo shop: {base}/dashboard/\n"
        f"    user name: {username}\n"
        f"    password:  {password}  (new at each start)\n"
        f"  Operator admin: {base}/admin/  (make a superuser: .venv/bin/python manage.py "
        f"createsuperuser)\n"
        f"  Demo merchant admin API key (X-Api-Key), shown once:\n  {demo_key}\n"
        f"Press Ctrl-C to stop.\n",
        flush=True,
    )
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the others", flush=True)
                code = proc.returncode or 1
                stopping = True
        time.sleep(0.2)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    print("Stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
