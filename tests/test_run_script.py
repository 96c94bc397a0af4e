"""`make run` as an operator starts it: scripts/run.py as a real process (migrate, seed,
uvicorn, a Celery worker with beat inside) on a fresh data folder."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from .processes import ROOT, wait_for

pytestmark = pytest.mark.process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gateway(tmp_path):
    """scripts/run.py with its embedded defaults (SQLite, the embedded broker, the dev
    node) in a data folder of its own; yields its port."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "PUBLIC_BASE_URL")
    }
    env.update(ZAPGATE_DATA_DIR=str(tmp_path / "data"), PORT=str(port), PYTHONUNBUFFERED="1")
    log_path = tmp_path / "run.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "scripts/run.py"], cwd=ROOT, env=env, stdout=log, stderr=log
        )

    def answers():
        if proc.poll() is not None:
            raise AssertionError(f"run.py exited:\n{log_path.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/health")
            return conn.getresponse().status == 200
        except OSError:
            return False

    try:
        wait_for(answers, 120, "the gateway started by scripts/run.py to answer", interval=0.2)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_a_kept_alive_connection_is_still_open_after_some_idle_seconds(gateway):
    """Client pools (requests, httpx, Node's agent) reuse a connection after seconds idle;
    a server's short default keep-alive (gunicorn's 2 s, uvicorn's 5 s) closed it under
    them (Connection reset)."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway, timeout=10)
    conn.request("GET", "/api/l402/pricing")
    first = conn.getresponse()
    first.read()
    assert first.status == 200 and not first.will_close
    sock = conn.sock
    time.sleep(6)  # idle past uvicorn's default keep-alive: the behaviour under test
    conn.request("GET", "/api/l402/pricing")
    second = conn.getresponse()
    second.read()
    assert second.status == 200
    assert conn.sock is sock  # the same connection, not a new one
    conn.close()


def test_declare_queues_prepares_a_fresh_embedded_broker_once_for_every_process(tmp_path):
    """`make run` declares the queues before its worker, beat and web server start: left to
    them, processes starting together on a fresh broker raced to insert the `celery` queue
    row and the loser died with an IntegrityError. Running it again changes nothing."""
    import sqlite3

    broker = tmp_path / "broker.sqlite3"
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        ZAPGATE_DATA_DIR=str(tmp_path / "data"), CELERY_BROKER_URL=f"sqla+sqlite:///{broker}"
    )
    for _ in range(2):
        subprocess.run(
            [sys.executable, "manage.py", "declare_queues"], cwd=ROOT, env=env, check=True
        )
    with sqlite3.connect(broker) as db:
        assert db.execute("select name from kombu_queue").fetchall() == [("celery",)]
