"""An existing, independent L402 client works against the gateway unmodified.

The client is `l402-requests` from PyPI (an auto-paying httpx client). Its wallet is a
small adapter over the dev node's wallet API (`POST /api/dev/pay`), so the payment goes
through the Lightning layer like any other; the rest is the client's own code: reading
the 402 challenge, paying, retrying with `Authorization: L402 ...`, and reusing the token.
"""

import httpx
import pytest
from l402_requests import L402Client
from l402_requests.wallets import WalletBase

from checkout.services import create_merchant


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
