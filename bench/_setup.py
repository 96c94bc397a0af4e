"""Shared set-up for the benchmarks: a throwaway data folder and database per run."""

import os
import sys
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
