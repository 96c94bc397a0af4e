"""The layout DESIGN.md promises, checked: only `lightning/` talks to a node, and the apps
load in any order (no import cycle that works only because of who imports first)."""

import ast
import itertools
import subprocess
import sys

import pytest

from .processes import ROOT

APPS = [
    "lightning",
    "checkout",
    "agents",
    "shopify_bridge",
    "webhooks",
    "l402",
    "refunds",
    "orders",
]


def python_files(app):
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


@pytest.mark.parametrize("app", [a for a in APPS if a != "lightning"])
def test_only_lightning_talks_to_a_node(app):
    offenders = []
    for path in python_files(app):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                for name in names
                if name.startswith("lightning.backends") and name != "lightning.backends.base"
            ]
    assert offenders == []


ORDERS = [list(reversed(APPS))] + [
    list(p) for p in itertools.islice(itertools.permutations(APPS), 0, 720, 97)
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda order: ",".join(a[:3] for a in order))
def test_the_apps_load_in_any_order(tmp_path, order):
    (tmp_path / "reordered_settings.py").write_text(
        "from config.settings import *  # noqa: F403\n"
        # The admin last: its autodiscovery must not be what makes the imports work.
        "INSTALLED_APPS = [a for a in INSTALLED_APPS if a not in "
        f"{APPS!r} and a != 'django.contrib.admin'] + {order!r} + ['django.contrib.admin']\n"
    )
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); "
            + "; ".join(f"import {app}.services, {app}.urls" for app in APPS if app != "lightning")
            + "; import config.urls",
        ],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{tmp_path}:{ROOT}",
            "DJANGO_SETTINGS_MODULE": "reordered_settings",
            "ZAPGATE_DATA_DIR": str(tmp_path / "var"),
        },
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
