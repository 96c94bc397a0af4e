"""Shared set-up for the benchmarks: a throwaway data folder and database per run."""

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def configure(name: str, database: str) -> str:
    """Point Django at a fresh database for benchmark `name` on `database` (sqlite|postgres),
    migrate it, and return a label for the printed figures."""
    data_dir = Path(f"/tmp/zapgate-bench-{name}-{database}")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["ZAPGATE_DATA_DIR"] = str(data_dir)
    if database == "postgres":
        db_name = f"zg_bench_{name}"
        import psycopg

        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {db_name}")
        os.environ["DATABASE_URL"] = f"{PG_BASE}/{db_name}"
    else:
        for leftover in data_dir.glob("zapgate.sqlite3*"):
            leftover.unlink()
        os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'zapgate.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return "PostgreSQL" if database == "postgres" else "SQLite"


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(app: str, workers: int, threads: int, name: str, *extra: str):
    """Serve `app` with gunicorn (gthread) on a free loopback port, logging to the data
    folder; returns once it answers HTTP, as (process, port)."""
    port = free_port()
    log_path = Path(os.environ["ZAPGATE_DATA_DIR"]) / f"gunicorn-{name}.log"
    env = dict(os.environ, ALLOWED_HOSTS="127.0.0.1,localhost", LOG_LEVEL="WARNING")
    command = [str(ROOT / ".venv/bin/gunicorn"), app, "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--threads", str(threads)]
    command += ["--worker-class", "gthread", "--keep-alive", "75", "--log-level", "warning"]
    proc = subprocess.Popen(
        [*command, *extra], cwd=ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"gunicorn ({name}) did not start; see {log_path}")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pids) -> dict[int, float]:
    """user+system CPU seconds of each process (all its threads) that still exists."""
    cpu = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu


def descendants(root: int) -> list[int]:
    """`root` and every process under it."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    return found
