"""Existing, independent L402 and MPP clients work against the gateway unmodified.

`l402-requests` from PyPI (an auto-paying httpx client), and Alby's
`@getalby/lightning-tools` from npm (L402, and MPP's `Payment` scheme), run by Node.js.
Their wallet is a small adapter over the dev node's wallet API (`POST /api/dev/pay`), so
the payment goes through the Lightning layer like any other; the rest is the clients' own
code: reading the 402 challenge, paying, retrying with the credential, and reusing it.
"""

import asyncio
import json
import os
import subprocess
from pathlib import Path

import bolt11
import httpx
import pytest
from l402_requests import L402Client
from l402_requests.wallets import WalletBase

from checkout.services import create_merchant

from .test_l402_protocol import NODE_MODULES


class DevNodeWallet(WalletBase):
    """Pays through the gateway's dev wallet API and returns the preimage."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.paid: list[str] = []

    async def pay_invoice(self, bolt11: str) -> str:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{self.base_url}/api/dev/pay", json={"bolt11": bolt11})
        response.raise_for_status()
        self.paid.append(bolt11)
        return response.json()["preimage"]


@pytest.fixture
def gateway(live_server, settings):
    settings.DEV_MODE = True
    settings.LIGHTNING_BACKEND = "devnode"
    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = True
    return live_server.url


def test_the_client_pays_once_and_reuses_its_token_on_a_protected_resource(gateway):
    wallet = DevNodeWallet(gateway)
    client = L402Client(wallet=wallet)
    first = client.get(f"{gateway}/api/l402/demo")
    assert first.status_code == 200, first.text
    assert first.json()["resource"] == "demo"
    assert len(wallet.paid) == 1
    assert client.spending_log.total_spent() == 10

    again = client.get(f"{gateway}/api/l402/demo")
    assert again.status_code == 200
    assert len(wallet.paid) == 1  # the cached token was accepted: no second payment


def test_the_client_pays_through_the_proxy_and_reuses_its_token(gateway, upstream):
    _, admin_key = create_merchant("Proxy shop")
    created = httpx.post(
        f"{gateway}/api/proxy",
        headers={"X-Api-Key": admin_key},
        json={
            "name": "Echo",
            "targetBaseUrl": upstream.url,
            "defaultPriceSats": 21,
            "authHeader": "X-Upstream-Key",
            "authValue": "s3cret",
        },
    )
    assert created.status_code == 201, created.text
    base = f"{gateway}/l402/proxy/{created.json()['proxyId']}"

    wallet = DevNodeWallet(gateway)
    client = L402Client(wallet=wallet)
    first = client.get(f"{base}/forecast", params={"city": "Oslo"})
    assert first.status_code == 200, first.text
    assert first.json()["path"] == "/forecast?city=Oslo"
    assert first.json()["headers"]["X-Upstream-Key"] == "s3cret"
    assert len(wallet.paid) == 1

    posted = client.post(f"{base}/reports", json={"n": 1})
    assert posted.status_code == 200
    assert posted.json()["method"] == "POST" and posted.json()["body"] == '{"n":1}'
    assert len(wallet.paid) == 1  # same proxy, same token
    assert [seen.method for seen in upstream.seen] == ["GET", "POST"]


# --- across endpoints and proxies with different prices -------------------------------------


def test_the_client_pays_again_for_an_endpoint_its_cached_token_does_not_cover(gateway):
    """l402-requests caches one token per host and first two path segments, so it sends
    the demo's token to premium-data: the gateway answers with premium-data's own 402
    (not a dead-end 401), the client pays that and goes on."""
    wallet = DevNodeWallet(gateway)
    client = L402Client(wallet=wallet)
    assert client.get(f"{gateway}/api/l402/demo").status_code == 200
    premium = client.get(f"{gateway}/api/l402/premium-data")
    assert premium.status_code == 200, premium.text
    assert premium.json()["resource"] == "premium-data"
    assert [bolt11.decode(b).amount_msat for b in wallet.paid] == [10_000, 100_000]
    assert client.spending_log.total_spent() == 110
    assert client.get(f"{gateway}/api/l402/premium-data").status_code == 200
    assert len(wallet.paid) == 2


def test_a_stale_token_in_either_scheme_gets_a_challenge_in_both(gateway):
    wallet = DevNodeWallet(gateway)
    first = httpx.get(f"{gateway}/api/l402/demo")
    preimage = asyncio.run(wallet.pay_invoice(first.json()["invoice"]))
    for scheme in ("L402", "LSAT"):
        response = httpx.get(
            f"{gateway}/api/l402/premium-data",
            headers={"Authorization": f"{scheme} {first.json()['macaroon']}:{preimage}"},
        )
        assert response.status_code == 402
        assert response.json()["reason"] == "token_out_of_scope"
        challenge = response.headers["WWW-Authenticate"]
        assert ", L402 macaroon=" in challenge and ", LSAT macaroon=" in challenge
        assert challenge.startswith('Payment id="')


@pytest.fixture
def priced_proxy(gateway, upstream):
    _, admin_key = create_merchant("Two prices")
    created = httpx.post(
        f"{gateway}/api/proxy",
        headers={"X-Api-Key": admin_key},
        json={"name": "Weather", "targetBaseUrl": upstream.url, "defaultPriceSats": 5},
    )
    assert created.status_code == 201, created.text
    proxy_id = created.json()["proxyId"]
    for endpoint_id, path, price in (("forecast", "/forecast", 50), ("history", "/history", 20)):
        added = httpx.post(
            f"{gateway}/api/proxy/{proxy_id}/manifest/endpoints",
            headers={"X-Api-Key": admin_key},
            json={
                "endpointId": endpoint_id,
                "path": path,
                "httpMethod": "GET",
                "basePriceSats": price,
            },
        )
        assert added.status_code == 201, added.text
    return f"/l402/proxy/{proxy_id}"


def test_the_client_goes_on_across_priced_proxy_endpoints(gateway, priced_proxy, upstream):
    wallet = DevNodeWallet(gateway)
    client = L402Client(wallet=wallet)
    base = gateway + priced_proxy
    assert client.get(f"{base}/forecast").json()["path"] == "/forecast"
    assert client.get(f"{base}/history").json()["path"] == "/history"
    assert client.get(f"{base}/history").status_code == 200
    assert [bolt11.decode(b).amount_msat for b in wallet.paid] == [50_000, 20_000]
    assert [seen.path for seen in upstream.seen] == ["/forecast", "/history", "/history"]


# --- @getalby/lightning-tools: L402 and MPP ---------------------------------------------------


def alby(gateway: str, *steps: str) -> list[dict]:
    run = subprocess.run(
        ["node", str(Path(__file__).parent / "js" / "alby_402.cjs"), gateway, *steps],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_albys_l402_client_pays_reuses_and_is_rechallenged_across_endpoints(gateway):
    demo, reused, stale, premium = alby(
        gateway,
        "l402:/api/l402/demo",
        "l402:/api/l402/demo:reuse",
        "l402:/api/l402/premium-data:reuse",
        "l402:/api/l402/premium-data",
    )
    assert demo["status"] == 200 and demo["paidInvoices"] == 1 and demo["amountSat"] == 10
    assert demo["credentialScheme"] == "L402"
    assert reused["status"] == 200 and reused["paidInvoices"] == 0
    # With a credential handed in, the library never pays; the 402 tells it what to buy.
    assert stale["status"] == 402 and stale["paidInvoices"] == 0
    assert json.loads(stale["body"])["reason"] == "token_out_of_scope"
    assert premium["status"] == 200 and premium["amountSat"] == 100
    assert json.loads(premium["body"])["resource"] == "premium-data"


def test_albys_mpp_client_pays_and_reuses_its_credential(gateway, priced_proxy, upstream):
    demo, reused, ping, forecast, history = alby(
        gateway,
        "mpp:/api/l402/demo",
        "mpp:/api/l402/demo:reuse",
        "any:/l402/test/ping",
        f"mpp:{priced_proxy}/forecast",
        f"mpp:{priced_proxy}/history",
    )
    assert demo["status"] == 200 and demo["paidInvoices"] == 1 and demo["amountSat"] == 10
    assert demo["credentialScheme"] == "Payment" and demo["receipt"]
    assert reused["status"] == 200 and reused["paidInvoices"] == 0 and reused["receipt"]
    assert ping["status"] == 200 and ping["credentialScheme"] == "Payment"
    assert json.loads(ping["body"])["pong"] is True
    assert forecast["status"] == 200 and forecast["amountSat"] == 50 and forecast["receipt"]
    assert history["status"] == 200 and history["amountSat"] == 20
    assert [seen.path for seen in upstream.seen] == ["/forecast", "/history"]
