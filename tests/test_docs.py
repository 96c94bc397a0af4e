"""The documentation matches the code: every setting read from the environment is in the
README and in .env.example, and the OpenAPI document generates cleanly."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def environment_variables() -> set[str]:
    settings_source = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))


def test_settings_read_a_sane_number_of_variables():
    assert {"DATABASE_URL", "LIGHTNING_BACKEND", "CELERY_BROKER_URL"} <= environment_variables()


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_environment_variable_is_documented(document):
    text = (ROOT / document).read_text()
    missing = sorted(name for name in environment_variables() if name not in text)
    assert missing == [], f"{document} does not mention {missing}"


@pytest.mark.django_db
def test_openapi_document_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))


@pytest.mark.django_db
def test_openapi_json_and_docs_are_served_with_local_assets(client):
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and schema["Content-Type"].startswith("application/")
    paths = schema.json()["paths"]
    for path in (
        "/api/checkout/invoices",
        "/api/webhooks",
        "/api/agents/register",
        "/api/l402/challenges",
        "/api/shopify/{slug}/checkout",
    ):
        assert path in paths, path
    docs = client.get("/docs").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs)
    assert assets and all(a.startswith("/") for a in assets), assets
