"""Real processes for the tests: Celery workers that run the watcher, pointed at the test
database, and helpers to wait for what they do."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The URL of the database the test run is using, for child processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def child_env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        ZAPGATE_DATA_DIR=str(settings.DATA_DIR),
        WATCHER_LEASE_SECONDS="2",
        # The broker matters only for starting the worker: Redis when the run names it.
        CELERY_BROKER_URL=os.environ.get(
            "CELERY_BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
        ),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    # As `make run` does before it starts its processes: children started together on a
    # fresh embedded broker would otherwise race to create its queue, and one would die.
    from config.celery import declare_queues

    declare_queues(env["CELERY_BROKER_URL"])
    return env


class Worker:
    """A `celery worker` process whose output goes to a log file we can read."""

    def __init__(self, tmp_path: Path, name: str, pool: str = "threads", **env: str):
        """`pool`: "threads" as `make run` starts it, or "prefork" (forked children)."""
        self.log_path = tmp_path / f"{name}.log"
        self.name = name
        self.pool = pool
        self.env = child_env(tmp_path, **env)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                self.pool,
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"{self.name}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes prefork children too
        )
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, the lease stays held until it runs out."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process freezes mid-whatever, as under a long GC pause or a VM
        migration, and keeps its lease only until the lease runs out."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """`scripts/run.py` in its own process group, so a kill takes every process at once,
    as a power cut or an OOM kill of the container would."""

    def __init__(self, tmp_path, port: int, pool: str = "threads", **env: str):
        """`env`: more environment for every process (e.g. the lnd backend's settings)."""
        self.tmp_path, self.port, self.pool, self.env = tmp_path, port, pool, env
        self.runs = 0
        self.proc = None
        self.key = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Stack:
        self.runs += 1
        self.log_path = self.tmp_path / f"stack-{self.runs}.log"
        env = child_env(
            self.tmp_path,
            PORT=str(self.port),
            ZAPGATE_DEV_MODE="true",
            WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
            WORKER_POOL=self.pool,
            **self.env,
        )
        env.pop("WATCHER_LEASE_SECONDS")  # the default, as `make run` has it
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/run.py"],
            cwd=ROOT,
            env=env,
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.key = wait_for(self._printed_key, 60, "make run to print the demo key")
        wait_for(self._serving, 30, "the web server to answer")
        return self

    def _printed_key(self):
        found = re.search(r"^\s+(zg_admin_\S+)$", self.log(), re.MULTILINE)
        if self.proc.poll() is not None:
            raise AssertionError(f"make run exited:\n{self.log()[-3000:]}")
        return found and found.group(1)

    def _serving(self):
        try:
            return httpx.get(f"{self.base}/api/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
