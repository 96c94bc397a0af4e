"""Lightning Enable's own API client works against the gateway, unmodified.

`LightningEnableApiClient` comes from the `lightning-enable-mcp` package on PyPI (the MCP
server AI agents use to sell and buy through Lightning Enable). It is pointed at a live
server by its own environment variables and every one of its 18 public methods is called
as the MCP tools call it; the assertions are what its tools read from the answers.
"""

import asyncio
import json

import httpx
import nostr_sdk as ns
import pytest
from rest_framework.test import APIClient

from checkout.services import create_merchant
from lightning.models import Invoice
from lightning.services import refresh_from_node

from .test_agents_support import Signer, register, verify


@pytest.fixture
def gateway(live_server, settings, monkeypatch, tmp_path):
    settings.DEV_MODE = True
    settings.LIGHTNING_BACKEND = "devnode"
    settings.PUBLIC_BASE_URL = live_server.url
    settings.AGENTS_REGISTER_RATE_LIMIT = 1000
    settings.AGENTS_CHALLENGE_RATE_LIMIT = 1000
    settings.AGENTS_VERIFY_RATE_LIMIT = 1000
    monkeypatch.setenv("HOME", str(tmp_path))  # the client's config file, never the real one
    monkeypatch.setenv("LIGHTNING_ENABLE_API_URL", live_server.url)
    return live_server.url


def client_for(monkeypatch, api_key: str):
    from lightning_enable_mcp.lightning_enable_api import LightningEnableApiClient

    monkeypatch.setenv("LIGHTNING_ENABLE_API_KEY", api_key)
    return LightningEnableApiClient()


def merchant_with_agent(name: str, agents: int = 1):
    """A merchant whose API key acts for `agents` verified agents (each proved by its key)."""
    merchant, key = create_merchant(name)
    api = APIClient()
    signers = []
    for n in range(agents):
        signer = Signer()
        register(api, signer, name=f"{name} agent {n + 1}")
        verify(api, signer, HTTP_X_API_KEY=key)
        signers.append(signer)
    return merchant, key, signers


def run(coroutine):
    return asyncio.run(coroutine)


def dev_pay(base: str, bolt11: str) -> str:
    """Pay with the dev wallet; the invoice is then recorded paid as the watcher would
    (no worker runs in this test)."""
    response = httpx.post(f"{base}/api/dev/pay", json={"bolt11": bolt11})
    response.raise_for_status()
    paid = response.json()
    refresh_from_node(Invoice.objects.get(bolt11=bolt11))
    return paid["preimage"]


def test_every_method_of_the_client_works(gateway, monkeypatch, upstream):
    seller, seller_key, (seller_agent,) = merchant_with_agent("Translations")
    _, buyer_key, (buyer_agent,) = merchant_with_agent("Buyer")
    nwc = (
        f"nostr+walletconnect://{ns.Keys.generate().public_key().to_hex()}"
        f"?relay=wss://relay.example.com&secret={ns.Keys.generate().secret_key().to_hex()}"
    )

    async def as_seller():
        client = client_for(monkeypatch, seller_key)
        results = {}
        try:
            # L402 challenges: create, pay, verify, list.
            made = await client.create_challenge("report-7", 21, "Quarterly report")
            assert made["success"], made
            results["challenge"] = made["challenge"]
            preimage = await asyncio.to_thread(dev_pay, gateway, made["challenge"]["invoice"])
            checked = await client.verify_token(made["challenge"]["macaroon"], preimage)
            assert checked == {"success": True, "valid": True, "resource": "report-7"}
            listed = await client.list_challenges(status="paid", limit=10, offset=0)
            assert listed["success"], listed
            rows = listed["data"]["challenges"]
            assert [row["paymentHash"] for row in rows] == [made["challenge"]["paymentHash"]]
            assert rows[0]["amountSats"] == 21 and rows[0]["status"] == "paid"
            assert listed["data"]["total"] == 1

            # Capabilities: the merchant's only agent acts without being named.
            published = await client.publish_capability(
                "translate", ["ai"], "Translates text", 5, None, None, ["nlp"]
            )
            assert published["success"], published
            results["capability"] = published["eventId"]
            found = await client.discover_capabilities("ai", None, None, 20)
            assert found["success"], found
            (capability,) = found["capabilities"]
            assert capability["eventId"] == published["eventId"]
            assert capability["pubkey"] == seller_agent.pubkey
            assert capability["priceSats"] == 5 and capability["hashtags"] == ["nlp"]

            # A paid API: proxy, rename, a priced endpoint, manifest, retire.
            proxy = await client.create_proxy("Weather", upstream.url, "Forecasts", 10)
            assert proxy["success"] and proxy["httpStatus"] == 201, proxy
            proxy_id = proxy["data"]["proxyId"]
            assert proxy["data"]["proxyUrl"].endswith(f"/l402/proxy/{proxy_id}")
            renamed = await client.rename_proxy(proxy_id, "Weather API")
            assert renamed["success"] and renamed["data"]["name"] == "Weather API"
            endpoint = await client.create_manifest_endpoint(
                proxy_id, "forecast", "/forecast", "GET", "A forecast", 3
            )
            assert endpoint["success"] and endpoint["data"]["basePriceSats"] == 3, endpoint
            manifest = await client.update_manifest_settings(proxy_id, "Forecasts", ["weather"])
            assert manifest["success"] and manifest["data"]["manifestEnabled"] is True
            assert manifest["data"]["manifestUrl"].endswith("/.well-known/l402-manifest.json")
            retired = await client.unpublish_capability(proxy_id, "moving")
            assert retired == {
                "success": True,
                "proxyId": proxy_id,
                "retired": True,
                "alreadyRetired": False,
            }

            # The merchant account.
            saved = await client.save_nwc_connection(nwc)
            assert saved["success"] and saved["data"]["connected"] is True, saved
            account = await client.get_merchant_account()
            assert account["success"], account
            assert account["data"]["name"] == "Translations"
            assert account["data"]["merchantId"] == seller.public_id
            assert account["data"]["onboarding"]["hasNwcConnection"] is True
            assert account["data"]["onboarding"]["proxyCount"] == 0  # retired
            guide = await client.get_quickstart()
            assert guide["success"] and guide["data"]["totalSteps"] == len(guide["data"]["steps"])
            assert all(
                step["url"].startswith(gateway) for step in guide["data"]["steps"] if step["url"]
            )
            provider = await client.set_payment_provider("nwc")
            assert provider["success"] is False and provider["httpStatus"] == 409
            assert "LIGHTNING_BACKEND" in provider["error"]  # a sentence, not a slug
        finally:
            await client.close()
        return results

    seller_results = run(as_seller())

    async def as_buyer():
        client = client_for(monkeypatch, buyer_key)
        try:
            asked = await client.request_service(
                seller_results["capability"], 100, json.dumps({"text": "hola", "to": "en"})
            )
            assert asked["success"], asked
            bare = await client.request_service(seller_results["capability"], 50, None)
            assert bare["success"], bare
            return asked["requestEventId"], bare["requestEventId"]
        finally:
            await client.close()

    asked_id, bare_id = run(as_buyer())
    seller_api = APIClient()
    seller_api.credentials(HTTP_X_API_KEY=seller_key)
    incoming = {
        r["requestEventId"]: r for r in seller_api.get("/api/agents/requests").json()["items"]
    }
    assert incoming[asked_id]["parameters"] == {"text": "hola", "to": "en"}
    assert incoming[bare_id]["parameters"] == {}
    agreed = seller_api.post(
        "/api/agents/agreements", {"requestEventId": asked_id, "priceSats": 90}, format="json"
    )
    assert agreed.status_code == 201, agreed.content
    agreement_id = agreed.json()["agreementId"]

    async def buyer_attests():
        client = client_for(monkeypatch, buyer_key)
        try:
            attested = await client.publish_attestation(
                seller_agent.pubkey, agreement_id, 5, "Fast and right", None
            )
            assert attested["success"], attested
            listed = await client.get_attestations(seller_agent.pubkey, 10)
            assert listed["success"], listed
            (attestation,) = listed["attestations"]
            assert attestation["rating"] == 5
            assert attestation["reviewerPubkey"] == buyer_agent.pubkey
            assert attestation["agreementId"] == agreement_id
            unknown = await client.publish_attestation(
                seller_agent.pubkey, "agreement-from-elsewhere", 4, "?", None
            )
            assert unknown == {"success": False, "error": "No agreement has this id."}
        finally:
            await client.close()

    run(buyer_attests())


def test_a_merchant_with_several_agents_or_none_is_told_what_to_do(gateway, monkeypatch):
    _, key, signers = merchant_with_agent("Two agents", agents=2)
    _, lonely_key = create_merchant("No agent")

    async def attempts():
        several = client_for(monkeypatch, key)
        try:
            refused = await several.publish_capability("svc", ["ai"], "", 1, None, None, None)
        finally:
            await several.close()
        none = client_for(monkeypatch, lonely_key)
        try:
            alone = await none.publish_capability("svc", ["ai"], "", 1, None, None, None)
        finally:
            await none.close()
        return refused, alone

    refused, alone = run(attempts())
    assert refused["success"] is False
    assert all(signer.pubkey in refused["error"] for signer in signers), refused
    assert alone["success"] is False
    assert "/api/agents/register" in alone["error"] and "/api/agents/verify" in alone["error"]


def test_the_client_shows_the_gateways_reason_for_bad_input(gateway, monkeypatch):
    _, key, _ = merchant_with_agent("Careless")

    async def attempt():
        client = client_for(monkeypatch, key)
        try:
            return (
                await client.publish_capability("svc", ["ai"], "", -5, None, None, None),
                await client.create_challenge("", 10),
            )
        finally:
            await client.close()

    capability, challenge = run(attempt())
    assert capability["success"] is False and "priceSats" in capability["error"], capability
    assert capability["error"] != "validation_error"
    assert challenge["success"] is False and "resource" in challenge["error"], challenge
