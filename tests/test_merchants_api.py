"""The merchant's account API: who the key belongs to, what to do next, the NWC connection
(checked as NIP-47, encrypted at rest, never shown again) and the payment provider."""

import nostr_sdk as ns
import pytest
from django.db import connection
from rest_framework.test import APIClient

from checkout.services import create_merchant, issue_api_key
from merchants.models import NwcConnection

PROBLEM = "application/problem+json"
WALLET = ns.Keys.generate()
SECRET = ns.Keys.generate().secret_key().to_hex()
GOOD = (
    f"nostr+walletconnect://{WALLET.public_key().to_hex()}"
    f"?relay=wss%3A%2F%2Frelay.example.com&relay=wss://second.example.org/v1"
    f"&secret={SECRET}&lud16=shop%40getalby.com"
)


@pytest.fixture
def shop(db, settings):
    settings.PUBLIC_BASE_URL = "https://pay.example.com"
    merchant, admin_key = create_merchant("Corner shop")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=admin_key)
    return merchant, client


def _problem(response, status, error):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["error"] == error, body
    assert body["message"] == body["detail"] and body["instance"]
    return body


def test_me_names_the_merchant_of_the_key_and_what_it_has_set_up(shop):
    merchant, client = shop
    body = client.get("/api/merchant/me").json()
    assert body["merchantId"] == merchant.public_id and body["name"] == "Corner shop"
    assert body["paymentProvider"] == "devnode" and body["apiKey"]["kind"] == "admin"
    assert body["onboarding"]["hasNwcConnection"] is False
    assert body["onboarding"]["productCount"] == 0
    assert body["onboarding"]["isFullyConfigured"] is False  # the dev node is no real node


def test_the_quickstart_lists_steps_with_this_deployments_urls(shop, settings):
    _, client = shop
    body = client.get("/api/merchant/quickstart").json()
    assert body["totalSteps"] == len(body["steps"]) >= 5
    assert body["isReadyForProduction"] is False
    titles = {step["title"]: step for step in body["steps"]}
    assert titles["Create an API key"]["isCompleted"] is True
    assert titles["Connect a Lightning node"]["isCompleted"] is False
    sell = titles["Offer something for sale"]
    assert sell["isRequired"] and not sell["isCompleted"]
    assert sell["url"] == "https://pay.example.com/api/checkout/products"
    assert body["nextStep"] == titles["Connect a Lightning node"]["stepNumber"]

    created = client.post(
        "/api/checkout/products", {"name": "Tea", "price": "2.50", "currency": "USD"}, format="json"
    )
    assert created.status_code == 201, created.content
    settings.LIGHTNING_BACKEND = "lnd"
    body = client.get("/api/merchant/quickstart").json()
    assert body["isReadyForProduction"] is True
    assert body["requiredStepsCompleted"] == body["requiredStepsTotal"]


def test_a_nwc_connection_is_checked_stored_encrypted_and_never_shown_again(shop):
    merchant, client = shop
    assert client.get("/api/merchant/nwc-connection").json()["connected"] is False
    saved = client.put("/api/merchant/nwc-connection", {"nwcConnectionString": GOOD}, format="json")
    assert saved.status_code == 201, saved.content
    body = saved.json()
    assert body["connected"] is True
    assert body["walletPubkey"] == WALLET.public_key().to_hex()
    assert body["relays"] == ["wss://relay.example.com", "wss://second.example.org/v1"]
    assert body["lud16"] == "shop@getalby.com"
    assert SECRET not in saved.content.decode()
    assert SECRET not in client.get("/api/merchant/nwc-connection").content.decode()
    assert SECRET not in client.get("/api/merchant/me").content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT connection_string FROM merchants_nwcconnection")
        (stored,) = cursor.fetchone()
    assert SECRET not in stored and "walletconnect" not in stored
    assert NwcConnection.objects.get(merchant=merchant).connection_string == GOOD
    assert client.get("/api/merchant/me").json()["onboarding"]["hasNwcConnection"] is True

    again = client.put("/api/merchant/nwc-connection", {"nwcConnectionString": GOOD}, format="json")
    assert again.status_code == 200 and NwcConnection.objects.count() == 1
    assert client.delete("/api/merchant/nwc-connection").status_code == 204
    _problem(client.delete("/api/merchant/nwc-connection"), 404, "not_found")


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("https://example.com", "nostr+walletconnect://"),
        (f"nostr+walletconnect://{'00' * 32}?relay=wss://r.example&secret={SECRET}", "pubkey"),
        (f"nostr+walletconnect://{WALLET.public_key().to_hex()}?secret={SECRET}", "no relay"),
        (
            f"nostr+walletconnect://{WALLET.public_key().to_hex()}"
            f"?relay=https://r.example&secret={SECRET}",
            "ws://",
        ),
        (
            f"nostr+walletconnect://{WALLET.public_key().to_hex()}?relay=wss://r.example",
            "secret",
        ),
        (
            f"nostr+walletconnect://{WALLET.public_key().to_hex()}"
            f"?relay=wss://r.example&secret={'ff' * 32}",
            "secret",
        ),
        (
            f"nostr+walletconnect://{WALLET.public_key().to_hex()}"
            f"?relay=wss://r.example&secret={SECRET}&lud16=not-an-address",
            "lud16",
        ),
    ],
)
def test_a_string_that_is_no_nip47_uri_is_refused_saying_why(shop, uri, says):
    _, client = shop
    response = client.put(
        "/api/merchant/nwc-connection", {"nwcConnectionString": uri}, format="json"
    )
    body = _problem(response, 400, "invalid_nwc_connection")
    assert says in body["detail"]
    assert NwcConnection.objects.count() == 0


def test_keys_and_merchants_see_only_what_they_may(shop):
    merchant, client = shop
    client.put("/api/merchant/nwc-connection", {"nwcConnectionString": GOOD}, format="json")
    _, invoice_key = issue_api_key(merchant, "invoice", "read only")
    reader = APIClient()
    reader.credentials(HTTP_X_API_KEY=invoice_key)
    assert reader.get("/api/merchant/nwc-connection").json()["connected"] is True
    _problem(reader.delete("/api/merchant/nwc-connection"), 403, "forbidden")
    _problem(
        reader.put("/api/merchant/payment-provider", {"provider": "devnode"}, format="json"),
        403,
        "forbidden",
    )

    _, other_key = create_merchant("Other shop")
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=other_key)
    assert other.get("/api/merchant/nwc-connection").json()["connected"] is False
    assert other.get("/api/merchant/me").json()["name"] == "Other shop"
    _problem(APIClient().get("/api/merchant/me"), 401, "unauthorized")


def test_the_payment_provider_is_the_operators_node_and_cannot_be_switched(shop):
    _, client = shop
    body = client.get("/api/merchant/payment-provider").json()
    assert body["provider"] == "devnode" and body["changeable"] is False
    same = client.put("/api/merchant/payment-provider", {"provider": "DEVNODE"}, format="json")
    assert same.status_code == 200 and same.json()["provider"] == "devnode"
    refused = _problem(
        client.put("/api/merchant/payment-provider", {"provider": "nwc"}, format="json"),
        409,
        "provider_fixed",
    )
    assert "LIGHTNING_BACKEND" in refused["message"]
