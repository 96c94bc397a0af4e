"""GET /api/health: 200 with every part, 503 naming the part that is down."""

import socket

import pytest
from django.db import OperationalError, connection

from lightning import services
from lightning.backends import get_backend
from lightning.simnode import SimNode

pytestmark = pytest.mark.django_db


def test_health_reports_the_dev_node_and_the_watcher(client):
    invoice = services.create_invoice(1000, "health")
    get_backend().pay_invoice(invoice.bolt11)
    node_key = f"devnode:{get_backend().get_info().pubkey}"
    from lightning.watcher import acquire_lease

    acquire_lease(node_key, "test", 30)
    services.apply_settlements(
        [get_backend().lookup_invoice(invoice.payment_hash)], node_key=node_key, holder="test"
    )
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["node"] == {
        "backend": "devnode",
        "pubkey": get_backend().get_info().pubkey,
        "alias": "zapgate-devnode",
        "network": "regtest",
    }
    assert body["watcher"]["settleIndex"] == 1
    assert body["watcher"]["lastEventAt"].startswith(str(invoice.created_at.year))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_is_503_naming_the_node_when_lnd_is_unreachable(client, settings, tmp_path):
    node = SimNode(tmp_path)  # only for a real certificate and macaroon
    node.start()
    node.stop()
    settings.LIGHTNING_BACKEND = "lnd"
    settings.LND_GRPC_HOST = f"127.0.0.1:{_closed_port()}"
    settings.LND_TLS_CERT = str(tmp_path / "tls.cert")
    settings.LND_MACAROON = str(tmp_path / "admin.macaroon")
    settings.LND_TIMEOUT_SECONDS = 2
    response = client.get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failing"] == ["node"]
    assert body["database"] == "ok"
    assert body["node"]["backend"] == "lnd"
    assert "cannot reach LND" in body["node"]["error"]


def test_health_is_503_naming_the_database_when_it_is_down(client, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"][0] == "database"
    assert "connection refused" in body["database"]
