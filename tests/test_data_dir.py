"""The data folder (keys, databases, the embedded broker's file, the cache) is readable by
the gateway's user only: 0700, its files 0600, whatever the umask of the shell that
started it, and also for what an earlier version left more open."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from .processes import ROOT

# What the gateway writes there when it runs: the database (and its WAL files while open),
# the dev node's key, the embedded broker's database, a cache entry.
USE_EVERYTHING = """
import json, pathlib, stat
import django
django.setup()
from django.core.cache import cache
from django.db import connection
from kombu import Connection
from lightning.backends import get_backend

get_backend().get_info()
cache.set("probe", 1)
with Connection(django.conf.settings.CELERY_BROKER_URL) as broker:
    broker.SimpleQueue("probe").put({"x": 1})
    with connection.cursor() as cursor:  # while both databases are open (WAL files exist)
        cursor.execute("SELECT 1")
        folder = pathlib.Path(django.conf.settings.DATA_DIR)
        print(json.dumps({
            str(p.relative_to(folder)): oct(stat.S_IMODE(p.lstat().st_mode))
            for p in [folder, *folder.rglob("*")]
        }))
"""


def run(data_dir: Path, *args: str) -> str:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "SECRET_KEY")
    }
    env.update(ZAPGATE_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o022),  # a usual shell's umask
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def modes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): oct(stat.S_IMODE(path.lstat().st_mode))
        for path in [folder, *folder.rglob("*")]
    }


def wrong_modes(folder: Path, seen: dict[str, str]) -> dict[str, str]:
    return {
        name: mode
        for name, mode in seen.items()
        if mode != ("0o700" if (folder / name).is_dir() else "0o600")
    }


def test_a_fresh_data_folder_and_everything_in_it_is_private(tmp_path):
    data_dir = tmp_path / "data"
    run(data_dir, "manage.py", "migrate", "--noinput")
    while_open = json.loads(run(data_dir, "-c", USE_EVERYTHING).strip().splitlines()[-1])
    for name in (
        "zapgate.sqlite3",
        "zapgate.sqlite3-wal",
        "zapgate.sqlite3-shm",
        "celery-broker.sqlite3",
        "devnode.key",
        "cache",
        "secret_key",
    ):
        assert name in while_open, while_open
    assert any(name.startswith("cache/") for name in while_open), while_open
    assert wrong_modes(data_dir, while_open) == {}, while_open
    assert wrong_modes(data_dir, modes(data_dir)) == {}


def test_what_an_earlier_run_left_open_is_made_private(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "cache").mkdir(parents=True)
    data_dir.chmod(0o755)
    (data_dir / "cache").chmod(0o755)
    (data_dir / "secret_key").write_text("an-old-secret-key-" * 3)
    (data_dir / "secret_key").chmod(0o644)
    run(data_dir, "manage.py", "check")
    seen = modes(data_dir)
    assert {seen["."], seen["cache"], seen["secret_key"]} == {"0o700", "0o600"}, seen
    assert wrong_modes(data_dir, seen) == {}, seen
