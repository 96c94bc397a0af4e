"""Shared pieces of the agent registry tests (no tests here).

Keys, challenge signatures and NIP-01/NIP-98 events are made by nostr-sdk (rust-nostr), an
implementation independent of the code under test.
"""

import base64
import hashlib
import json
import secrets
import time

import nostr_sdk as ns
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

BASE = "http://testserver"
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _fresh_limits(settings):
    """Rate-limit counters live in the cache: start each test with none, and with limits
    high enough that only the rate-limit tests meet them."""
    cache.clear()
    settings.AGENTS_REGISTER_RATE_LIMIT = 1000
    settings.AGENTS_CHALLENGE_RATE_LIMIT = 1000
    settings.AGENTS_VERIFY_RATE_LIMIT = 1000
    yield
    cache.clear()


@pytest.fixture
def api():
    return APIClient()


class Signer:
    """An agent's key, held by nostr-sdk."""

    def __init__(self, secret_hex: str | None = None):
        self.keys = ns.Keys.parse(secret_hex) if secret_hex else ns.Keys.generate()

    @property
    def pubkey(self) -> str:
        return self.keys.public_key().to_hex()

    def sign(self, message: bytes) -> str:
        return self.keys.sign_schnorr(message)

    def event(self, kind: int, content: str = "", tags=(), created_at: int | None = None):
        builder = ns.EventBuilder(ns.Kind(kind), content).tags(
            [ns.Tag.parse(list(tag)) for tag in tags]
        )
        if created_at is not None:
            builder = builder.custom_created_at(ns.Timestamp.from_secs(created_at))
        return json.loads(builder.finalize(self.keys).as_json())

    def http_event(self, method: str, url: str, body: bytes | None = None, created_at=None):
        # The nonce keeps two identical calls in the same second from being one event id
        # (which the server would rightly refuse as a replay).
        tags = [["u", url], ["method", method], ["nonce", secrets.token_hex(8)]]
        if body is not None:
            tags.append(["payload", hashlib.sha256(body).hexdigest()])
        return self.event(27235, tags=tags, created_at=created_at or int(time.time()))


def nostr_header(event: dict) -> str:
    return "Nostr " + base64.b64encode(json.dumps(event).encode()).decode()


def signed_call(client, signer: Signer, method: str, path: str, data=None, **event_options):
    """Call `path` as the agent, with NIP-98 over the exact body sent."""
    body = json.dumps(data).encode() if data is not None else b""
    event = signer.http_event(
        method, BASE + path, body if data is not None else None, **event_options
    )
    return client.generic(
        method,
        path,
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=nostr_header(event),
    )


def register(client, signer: Signer, name="Test agent", **extra):
    response = client.post(
        "/api/agents/register",
        {"pubkey": signer.pubkey, "name": name, "description": "does things"},
        format="json",
        **extra,
    )
    assert response.status_code == 201, response.content
    return response.json()


def challenge_for(client, signer: Signer, **extra) -> str:
    """A challenge for `signer`'s key; with a merchant's `HTTP_X_API_KEY`, bound to it."""
    response = client.get("/api/agents/challenge", {"pubkey": signer.pubkey}, **extra)
    assert response.status_code == 200, response.content
    return response.json()["challenge"]


def verify(client, signer: Signer, **extra):
    """Prove `signer`'s key; with a merchant's `HTTP_X_API_KEY`, for that merchant."""
    challenge = challenge_for(client, signer, **extra)
    response = client.post(
        "/api/agents/verify",
        {
            "pubkey": signer.pubkey,
            "challenge": challenge,
            "signature": signer.sign(bytes.fromhex(challenge)),
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def verified_agent(client, name="Test agent") -> Signer:
    signer = Signer()
    register(client, signer, name=name)
    verify(client, signer)
    return signer


def assert_problem(response, status: int, error: str):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    assert response.json()["error"] == error, response.json()
