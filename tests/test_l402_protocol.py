"""L402 protocol: the challenge, the token format (as Aperture makes it), credentials and
each way one can be wrong, merchant challenges, content, events and stats."""

import base64
import json
import os
import secrets
import struct
import subprocess
import time
from pathlib import Path

import bolt11
import pytest
from django.test import Client, override_settings
from pymacaroons import MACAROON_V2, Macaroon
from pymacaroons.serializers.binary_serializer import BinarySerializer

from checkout.services import create_merchant
from l402 import macaroons
from l402.models import L402Challenge
from lightning import services as lightning
from lightning.backends import get_backend
from lightning.models import Invoice
from webhooks.models import WebhookEvent
from webhooks.services import create_endpoint

from .l402_support import (
    credential,
    decode_v2,
    mpp_challenge,
    mpp_credential,
    mpp_request,
    pay,
    signature_chain,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def shop():
    merchant, key = create_merchant("Shop", "shop@example.com")
    return merchant, {"HTTP_X_API_KEY": key}


def challenge_of(response):
    assert response.status_code == 402, response.content
    return response.json()


def problem(response, status, error):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["error"] == error
    return body["detail"]


def rechallenged(response, reason):
    """A credential that does not pay for this request: a fresh 402 challenge, the reason
    kept in the body."""
    body = challenge_of(response)
    assert body["error"] == "payment_required" and body["reason"] == reason, body
    assert body["invoice"] in response["WWW-Authenticate"]
    return body["detail"]


# --- the challenge -------------------------------------------------------------------------------


def test_an_unpaid_request_gets_a_402_challenge_in_both_schemes(client):
    response = client.get("/api/l402/demo")
    body = challenge_of(response)
    assert response["Content-Type"] == "application/problem+json"
    assert body["amountSats"] == 10 and body["expiresAt"].endswith("Z")
    header = response["WWW-Authenticate"]
    expected = f'macaroon="{body["macaroon"]}", invoice="{body["invoice"]}"'
    # MPP's Payment first (its clients read the first challenge), then L402 and LSAT.
    payment, l402 = header.split(", L402 ", 1)
    assert payment.startswith('Payment id="') and 'intent="charge"' in payment
    assert f"L402 {l402}" == f"L402 {expected}, LSAT {expected}"
    decoded = bolt11.decode(body["invoice"])
    assert decoded.payment_hash == body["paymentHash"]
    assert decoded.amount_msat == 10_000
    challenge = L402Challenge.objects.get(invoice__payment_hash=body["paymentHash"])
    assert challenge.invoice.state == Invoice.State.OPEN and challenge.macaroon == body["macaroon"]


def test_the_macaroon_has_aperture_s_format(client):
    body = challenge_of(client.get("/api/l402/demo"))
    raw = base64.b64decode(body["macaroon"], validate=True)  # standard alphabet, padded
    assert base64.b64encode(raw).decode() == body["macaroon"]
    decoded = decode_v2(raw)  # the spec-written decoder, not pymacaroons
    version, payment_hash, token_id = struct.unpack(">H32s32s", decoded["identifier"])
    assert len(decoded["identifier"]) == 66
    assert version == 0
    assert payment_hash.hex() == body["paymentHash"]
    assert len(token_id) == 32
    assert decoded["third_party"] == []
    conditions = dict(c.split("=", 1) for c in decoded["caveats"])
    assert conditions["resource"] == "demo" and conditions["amount"] == "10"
    assert int(conditions["expires"]) > 0
    # The signature is the plain macaroon HMAC chain under the token's derived root key.
    key = macaroons.root_key(token_id)
    assert signature_chain(key, decoded["identifier"], decoded["caveats"]) == decoded["signature"]
    # And pymacaroons reads it back to the same bytes.
    again = BinarySerializer().deserialize_raw(raw)
    assert BinarySerializer().serialize_raw(again) == raw


# `make test` installs it (see the Makefile); L402_NODE_MODULES points elsewhere.
NODE_MODULES = Path(
    os.environ.get("L402_NODE_MODULES", Path(__file__).parent.parent / ".venv/npm/node_modules")
).resolve()


def test_an_independent_macaroon_library_decodes_and_verifies_the_token(client):
    """The npm `macaroon` package (the JavaScript port of go-macaroon, which Aperture
    uses) imports our base64 token, sees the same identifier and caveats, and verifies the
    signature with the root key."""
    body = challenge_of(client.get("/api/l402/demo"))
    identifier = decode_v2(base64.b64decode(body["macaroon"]))["identifier"]
    root_key = macaroons.root_key(identifier[34:]).hex()
    script = """
        const m = require('macaroon');
        const [b64, keyHex] = process.argv.slice(1);
        const mac = m.importMacaroon(b64);
        const seen = [];
        const check = c => { seen.push(Buffer.from(c).toString()); return null; };
        mac.verify(Buffer.from(keyHex, 'hex'), check);
        console.log(JSON.stringify({
            identifier: Buffer.from(mac.identifier).toString('hex'),
            caveats: mac.caveats.map(c => Buffer.from(c.identifier).toString()),
            checked: seen,
            location: mac.location,
        }));
    """
    out = subprocess.run(
        ["node", "-e", script, body["macaroon"], root_key],
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        check=True,
    )
    seen = json.loads(out.stdout)
    assert seen["identifier"] == identifier.hex()
    assert seen["identifier"][4:68] == body["paymentHash"]
    assert seen["caveats"] == seen["checked"] and "resource=demo" in seen["caveats"]
    bad = subprocess.run(
        ["node", "-e", script, body["macaroon"], secrets.token_hex(32)],
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert bad.returncode != 0  # the wrong root key does not verify


# --- credentials ---------------------------------------------------------------------------------


def test_a_paid_token_opens_the_resource_again_and_again_without_paying(client):
    body = challenge_of(client.get("/api/l402/demo"))
    preimage = pay(body["invoice"])
    invoices = Invoice.objects.count()
    for scheme in ("L402", "LSAT", "l402"):
        response = client.get(
            "/api/l402/demo", HTTP_AUTHORIZATION=credential(body, preimage, scheme)
        )
        assert response.status_code == 200, response.content
        assert response.json()["resource"] == "demo"
    # URL-safe, unpadded base64 (as pymacaroons writes it) is accepted too.
    urlsafe = body["macaroon"].replace("+", "-").replace("/", "_").rstrip("=")
    response = client.get("/api/l402/demo", HTTP_AUTHORIZATION=f"L402 {urlsafe}:{preimage}")
    assert response.status_code == 200
    assert Invoice.objects.count() == invoices  # no new invoice: the token was reused


@pytest.fixture
def paid_demo(client):
    body = challenge_of(client.get("/api/l402/demo"))
    return body, pay(body["invoice"])


def _tampered(macaroon: str) -> str:
    raw = base64.b64decode(macaroon)
    return base64.b64encode(raw.replace(b"resource=demo", b"resource=deme")).decode()


def _foreign(payment_hash: str) -> str:
    """Well-formed, same identifier layout, signed with a key that is not ours."""
    identifier = struct.pack(">H32s32s", 0, bytes.fromhex(payment_hash), secrets.token_bytes(32))
    mac = Macaroon(
        location="elsewhere",
        identifier=identifier,
        key=secrets.token_bytes(32),
        version=MACAROON_V2,
    )
    mac.add_first_party_caveat("resource=demo")
    return base64.b64encode(BinarySerializer().serialize_raw(mac)).decode()


@pytest.mark.parametrize(
    ("make_header", "error", "says"),
    [
        (lambda b, p: f"L402 {_tampered(b['macaroon'])}:{p}", "invalid_signature", "signature"),
        (lambda b, p: f"L402 {_foreign(b['paymentHash'])}:{p}", "invalid_signature", "signature"),
        (
            lambda b, p: f"L402 {b['macaroon']}:{secrets.token_hex(32)}",
            "invalid_preimage",
            "does not match",
        ),
        (lambda b, p: f"L402 {b['macaroon']}:{'zz' * 32}", "malformed_preimage", "not hex"),
        (lambda b, p: f"L402 {b['macaroon']}:{p[:20]}", "malformed_preimage", "32 bytes"),
        (lambda b, p: f"L402 {b['macaroon']}", "malformed_credential", "<hex preimage>"),
        (lambda b, p: f"L402 :{p}", "malformed_credential", "<hex preimage>"),
        (lambda b, p: f"L402 {b['macaroon']}:", "malformed_credential", "<hex preimage>"),
        (lambda b, p: f"L402 not*base64!:{p}", "malformed_token", "base64"),
        (
            lambda b, p: f"L402 {base64.b64encode(b'hello').decode()}:{p}",
            "malformed_token",
            "binary macaroon",
        ),
    ],
    ids=[
        "tampered",
        "foreign-key",
        "wrong-preimage",
        "bad-hex",
        "short-preimage",
        "no-preimage",
        "no-macaroon",
        "empty-preimage",
        "bad-base64",
        "not-a-macaroon",
    ],
)
def test_a_bad_credential_says_why(client, paid_demo, make_header, error, says):
    """A malformed header is a 401; a well-formed token that does not pay (tampered, signed
    by another server, the wrong preimage) gets a fresh challenge to pay instead."""
    body, preimage = paid_demo
    response = client.get("/api/l402/demo", HTTP_AUTHORIZATION=make_header(body, preimage))
    if error.startswith("malformed_"):
        assert says in problem(response, 401, error)
        assert response["WWW-Authenticate"].startswith("L402 ")
    else:
        assert says in rechallenged(response, error)


def test_any_damaged_token_is_refused_with_a_reason_never_an_error(paid_demo):
    body, preimage = paid_demo
    raw = base64.b64decode(body["macaroon"])
    damaged = [raw[:cut] for cut in range(len(raw))]
    # Every byte but the location's text (which macaroons never sign: it is a hint).
    assert raw[1:3] == bytes([1, len("zapgate")]) and raw[3:10] == b"zapgate"
    flips = [i for i in range(len(raw)) if not 3 <= i < 10]
    damaged += [raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :] for i in flips]
    damaged.append(raw + b"\x00")
    for token in damaged:
        with pytest.raises(macaroons.CredentialError) as refused:
            macaroons.verify(base64.b64encode(token).decode(), preimage)
        assert refused.value.status == 401 and str(refused.value)


def test_a_token_for_another_resource_is_refused(client, paid_demo):
    body, preimage = paid_demo
    response = client.get("/api/l402/premium-data", HTTP_AUTHORIZATION=credential(body, preimage))
    assert "'demo'" in rechallenged(response, "token_out_of_scope")
    assert response.json()["amountSats"] == 100  # premium-data's own price


def test_another_scheme_is_simply_unpaid(client):
    response = client.get("/api/l402/demo", HTTP_AUTHORIZATION="Bearer abc")
    assert response.status_code == 402


def test_an_expired_token_gets_a_fresh_402(client):
    with override_settings(L402_TOKEN_TTL_SECONDS=0):
        body = challenge_of(client.get("/api/l402/demo"))
    preimage = pay(body["invoice"])
    response = client.get("/api/l402/demo", HTTP_AUTHORIZATION=credential(body, preimage))
    fresh = challenge_of(response)
    assert "expired" in fresh["detail"]
    assert fresh["paymentHash"] != body["paymentHash"]
    assert fresh["invoice"] in response["WWW-Authenticate"]


def test_a_token_narrowed_by_its_holder_still_works_and_its_caveats_hold(client, paid_demo):
    """Attenuation: the holder may add caveats; they only ever restrict."""
    body, preimage = paid_demo
    mac = BinarySerializer().deserialize_raw(base64.b64decode(body["macaroon"]))
    mac.add_first_party_caveat("method=GET")
    narrowed = base64.b64encode(BinarySerializer().serialize_raw(mac)).decode()
    ok = client.get("/api/l402/demo", HTTP_AUTHORIZATION=f"L402 {narrowed}:{preimage}")
    assert ok.status_code == 200
    mac.add_first_party_caveat("colour=blue")
    odd = base64.b64encode(BinarySerializer().serialize_raw(mac)).decode()
    response = client.get("/api/l402/demo", HTTP_AUTHORIZATION=f"L402 {odd}:{preimage}")
    assert "colour" in rechallenged(response, "invalid_caveat")
    third = BinarySerializer().deserialize_raw(base64.b64decode(body["macaroon"]))
    third.add_third_party_caveat("https://elsewhere.example", secrets.token_bytes(32), "ask")
    delegated = base64.b64encode(BinarySerializer().serialize_raw(third)).decode()
    response = client.get("/api/l402/demo", HTTP_AUTHORIZATION=f"L402 {delegated}:{preimage}")
    assert "third-party" in rechallenged(response, "invalid_caveat")


# --- merchant challenges -----------------------------------------------------------------------


def test_a_merchant_challenge_and_its_verification(client, shop):
    merchant, key = shop
    response = client.post(
        "/api/l402/challenges",
        {"resource": "report-2026", "priceSats": 250, "description": "Annual report"},
        content_type="application/json",
        **key,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "invoice",
        "macaroon",
        "paymentHash",
        "expiresAt",
        "resource",
        "priceSats",
        "mppChallenge",
    }
    assert body["resource"] == "report-2026" and body["priceSats"] == 250
    assert body["mppChallenge"].startswith('Payment id="')
    request = mpp_request(body["mppChallenge"])
    assert request["methodDetails"]["invoice"] == body["invoice"]
    assert request["amount"] == "250" and request["currency"] == "sat"
    assert request["externalId"] == "report-2026" and request["recipient"] == merchant.public_id
    assert bolt11.decode(body["invoice"]).amount_msat == 250_000

    preimage = pay(body["invoice"])
    verify = {"macaroon": body["macaroon"], "preimage": preimage}
    answer = client.post(
        "/api/l402/challenges/verify", verify, content_type="application/json", **key
    ).json()
    assert answer == {
        "valid": True,
        "resource": "report-2026",
        "merchantId": merchant.public_id,
        "amountSats": 250,
        "paymentHash": body["paymentHash"],
        "error": None,
    }
    wrong = client.post(
        "/api/l402/challenges/verify",
        {**verify, "preimage": secrets.token_hex(32)},
        content_type="application/json",
        **key,
    )
    assert wrong.status_code == 200
    assert wrong.json()["valid"] is False and "preimage" in wrong.json()["error"]

    _, other_key = create_merchant("Other")
    foreign = client.post(
        "/api/l402/challenges/verify",
        verify,
        content_type="application/json",
        HTTP_X_API_KEY=other_key,
    ).json()
    assert (
        foreign["valid"] is False
        and foreign["error"] == "the token was issued for another merchant"
    )

    # The same challenge paid by an MPP client: its credential is checked the same way.
    paid_by_mpp = mpp_credential(body["mppChallenge"], preimage).removeprefix("Payment ")
    as_mpp = {"paymentCredential": paid_by_mpp}
    checked = client.post(
        "/api/l402/challenges/verify", as_mpp, content_type="application/json", **key
    ).json()
    assert checked == {**answer, "error": None}
    assert (
        client.post(
            "/api/l402/challenges/verify",
            as_mpp,
            content_type="application/json",
            HTTP_X_API_KEY=other_key,
        ).json()["error"]
        == "the credential was issued for another merchant"
    )
    neither = client.post("/api/l402/challenges/verify", {}, content_type="application/json", **key)
    assert neither.status_code == 400 and "preimage" in neither.json()["errors"]


def test_verify_holds_every_caveat_of_an_attenuated_token(client, shop, monkeypatch):
    """The holder narrows the token with pymacaroons (an independent implementation): an
    earlier expiry, a second merchant or resource. Every caveat must hold, not the first."""
    merchant, key = shop
    body = client.post(
        "/api/l402/challenges",
        {"resource": "report-2026", "priceSats": 5},
        content_type="application/json",
        **key,
    ).json()
    preimage = pay(body["invoice"])

    def narrowed(*caveats):
        mac = Macaroon.deserialize(body["macaroon"].replace("+", "-").replace("/", "_"))
        for caveat in caveats:
            mac.add_first_party_caveat(caveat)
        return mac.serialize()  # URL-safe, unpadded: pymacaroons' own form

    def verify(macaroon):
        response = client.post(
            "/api/l402/challenges/verify",
            {"macaroon": macaroon, "preimage": preimage},
            content_type="application/json",
            **key,
        )
        assert response.status_code == 200
        return response.json()

    now = time.time()
    within_the_hour = narrowed(f"expires={int(now) + 3600}")
    assert verify(within_the_hour)["valid"] is True  # the minted expiry is a day away
    monkeypatch.setattr(macaroons.time, "time", lambda: now + 7200)
    late = verify(within_the_hour)
    assert late["valid"] is False and "expired" in late["error"]
    assert verify(body["macaroon"])["valid"] is True  # the token as sold still holds
    monkeypatch.undo()

    assert "expired" in verify(narrowed(f"expires={int(now) - 1}"))["error"]
    for caveats, says in (
        (["merchant=mch_someone_else"], "another merchant"),
        (["resource=another-report"], "resource caveats disagree"),
        (["amount=1000000"], "amount caveats disagree"),
        (["method=GET"], "cannot see"),
        (["colour=blue"], "unknown caveat"),
    ):
        answer = verify(narrowed(*caveats))
        assert answer["valid"] is False and says in answer["error"], (caveats, answer)
        assert answer["resource"] == "report-2026"  # what it was sold for, still reported
    assert verify(narrowed("resource=report-2026"))["valid"] is True  # the same twice holds


def test_challenge_input_is_checked(client, shop):
    _, key = shop
    for payload, field in (
        ({"resource": "x", "priceSats": 0}, "priceSats"),
        ({"priceSats": 5}, "resource"),
        ({"resource": "", "priceSats": 5}, "resource"),
    ):
        response = client.post(
            "/api/l402/challenges", payload, content_type="application/json", **key
        )
        assert response.status_code == 400
        assert field in response.json()["errors"]
    anonymous = client.post(
        "/api/l402/challenges", {"resource": "x", "priceSats": 5}, content_type="application/json"
    )
    assert anonymous.status_code == 401
    long_key = client.post(
        "/api/l402/challenges",
        {"resource": "x", "priceSats": 5},
        content_type="application/json",
        HTTP_X_IDEMPOTENCY_KEY="k" * 257,
        **key,
    )
    assert long_key.status_code == 400


def test_an_idempotency_key_returns_the_same_challenge(client, shop):
    _, key = shop
    payload = {"resource": "r", "priceSats": 7}

    def create(body, idem):
        return client.post(
            "/api/l402/challenges",
            body,
            content_type="application/json",
            HTTP_X_IDEMPOTENCY_KEY=idem,
            **key,
        )

    first, second = create(payload, "abc"), create(payload, "abc")
    assert first.status_code == second.status_code == 201
    assert first.json()["paymentHash"] == second.json()["paymentHash"]
    assert create(payload, "other").json()["paymentHash"] != first.json()["paymentHash"]
    assert create({"resource": "r", "priceSats": 8}, "abc").status_code == 409


def test_paid_challenges_are_listed_counted_and_announced(client, shop):
    merchant, key = shop
    create_endpoint(merchant, "https://shop.example.com/hooks", ["l402.paid"])
    made = [
        client.post(
            "/api/l402/challenges",
            {"resource": resource, "priceSats": price},
            content_type="application/json",
            **key,
        ).json()
        for resource, price in (("a", 5), ("a", 5), ("b", 11))
    ]
    for body in made[1:]:
        pay(body["invoice"])
        lightning.apply_settlements([get_backend().lookup_invoice(body["paymentHash"])])

    listing = client.get("/api/l402/challenges?status=paid", **key).json()
    assert listing["total"] == 2
    assert {item["paymentHash"] for item in listing["items"]} == {
        made[1]["paymentHash"],
        made[2]["paymentHash"],
    }
    assert client.get("/api/l402/challenges?status=pending", **key).json()["total"] == 1
    assert client.get("/api/l402/challenges?status=nope", **key).status_code == 400

    stats = client.get("/api/stats/l402", **key).json()
    assert stats["challengesIssued"] == 3 and stats["challengesPaid"] == 2
    assert stats["revenueSats"] == 16
    by_resource = {row["resource"]: row for row in stats["byResource"]}
    assert by_resource["a"] == {
        "resource": "a",
        "challengesIssued": 2,
        "challengesPaid": 1,
        "revenueSats": 5,
    }

    events = WebhookEvent.objects.filter(merchant=merchant, type="l402.paid")
    assert events.count() == 2
    data = [json.loads(event.body)["data"] for event in events]
    assert {d["paymentHash"] for d in data} == {made[1]["paymentHash"], made[2]["paymentHash"]}
    assert {d["amountSats"] for d in data} == {5, 11}
    # A replayed settlement announces nothing twice.
    lightning.apply_settlements([get_backend().lookup_invoice(made[2]["paymentHash"])])
    assert events.count() == 2


# --- content -------------------------------------------------------------------------------------


def publish(client, key, slug, price):
    response = client.post(
        "/api/l402/content",
        {
            "slug": slug,
            "title": slug.title(),
            "teaser": f"About {slug}",
            "body": f"The whole {slug}",
            "priceSats": price,
        },
        content_type="application/json",
        **key,
    )
    assert response.status_code == 201, response.content


def test_paywalled_content_and_bundles(client, shop):
    merchant, key = shop
    for slug, price in (("alpha", 3), ("beta", 4), ("gamma", 5)):
        publish(client, key, slug, price)
    listing = client.get("/api/l402/content").json()
    assert listing["total"] == 3
    assert all("body" not in item for item in listing["items"])

    single = challenge_of(client.get("/api/l402/content/alpha"))
    assert single["amountSats"] == 3
    alpha = credential(single, pay(single["invoice"]))
    opened = client.get("/api/l402/content/alpha", HTTP_AUTHORIZATION=alpha)
    assert opened.status_code == 200 and opened.json()["body"] == "The whole alpha"
    beta_refused = client.get("/api/l402/content/beta", HTTP_AUTHORIZATION=alpha)
    assert "'alpha'" in rechallenged(beta_refused, "token_out_of_scope")

    bundle = {"slugs": ["beta", "gamma"]}
    offer = challenge_of(client.post("/api/l402/content/bundle", bundle, "application/json"))
    assert offer["amountSats"] == 9
    token = credential(offer, pay(offer["invoice"]))
    both = client.post(
        "/api/l402/content/bundle", bundle, "application/json", HTTP_AUTHORIZATION=token
    )
    assert both.status_code == 200
    assert [item["body"] for item in both.json()["items"]] == ["The whole beta", "The whole gamma"]
    for slug in ("beta", "gamma"):
        assert client.get(f"/api/l402/content/{slug}", HTTP_AUTHORIZATION=token).status_code == 200
    assert client.get("/api/l402/content/alpha", HTTP_AUTHORIZATION=token).status_code == 402
    missing = client.post("/api/l402/content/bundle", {"slugs": ["nope"]}, "application/json")
    assert missing.status_code == 404
    assert client.get("/api/l402/content/nope").status_code == 404


def test_content_of_another_merchant_cannot_be_bundled_with_ours(client, shop):
    _, key = shop
    _, other_key = create_merchant("Other")
    publish(client, key, "ours", 2)
    publish(client, {"HTTP_X_API_KEY": other_key}, "theirs", 2)
    response = client.post(
        "/api/l402/content/bundle", {"slugs": ["ours", "theirs"]}, "application/json"
    )
    assert response.status_code == 400 and "one merchant" in response.json()["detail"]


# --- public endpoints ----------------------------------------------------------------------------


def test_pricing_status_and_version_check(client):
    pricing = client.get("/api/l402/pricing").json()
    assert {r["path"]: r["priceSats"] for r in pricing["resources"]} == {
        "/api/l402/demo": 10,
        "/api/l402/premium-data": 100,
        "/l402/test/ping": 1,
    }
    assert client.get("/api/l402/status").json()["schemes"] == ["L402", "LSAT", "Payment"]
    with override_settings(L402_MCP_LATEST_VERSION="2.1.0", L402_MCP_MIN_VERSION="2.0.0"):
        old = client.get("/api/mcp/version-check?currentVersion=1.9.9").json()
        assert old["updateRequired"] and old["updateRecommended"]
        assert old["latestVersion"] == "2.1.0"
        behind = client.get("/api/mcp/version-check?currentVersion=2.0.5").json()
        assert behind["updateRecommended"] and not behind["updateRequired"]
        current = client.get("/api/mcp/version-check?currentVersion=2.1.0").json()
        assert not current["updateRecommended"] and not current["updateRequired"]
        assert set(current) == {
            "latestVersion",
            "updateRecommended",
            "updateRequired",
            "message",
            "releaseNotes",
        }
        assert client.get("/api/mcp/version-check?currentVersion=banana").status_code == 400


def test_the_openapi_document_covers_the_l402_endpoints(client):
    paths = json.loads(client.get("/openapi.json?format=json").content)["paths"]
    for path in (
        "/api/l402/challenges",
        "/api/l402/challenges/verify",
        "/api/l402/demo",
        "/api/l402/content/{slug}",
        "/api/proxy/{proxy_id}",
        "/api/invoice",
        "/api/stats/l402",
        "/api/manifests/registry",
        "/api/mcp/version-check",
    ):
        assert path in paths, path
    assert any(p.startswith("/l402/proxy/") for p in paths)


# --- MPP: the Payment scheme ----------------------------------------------------------------


def _receipt(response) -> dict:
    raw = response["Payment-Receipt"]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def test_a_payment_credential_pays_for_the_resource_and_is_reused(client):
    response = client.get("/api/l402/demo")
    header = response["WWW-Authenticate"]
    request = mpp_request(header)
    assert request["amount"] == "10" and request["currency"] == "sat"
    assert request["methodDetails"]["network"] == "regtest"
    assert request["methodDetails"]["invoice"] == response.json()["invoice"]  # one invoice
    preimage = pay(request["methodDetails"]["invoice"])

    paid = client.get("/api/l402/demo", HTTP_AUTHORIZATION=mpp_credential(header, preimage))
    assert paid.status_code == 200, paid.content
    assert paid.json()["resource"] == "demo"
    receipt = _receipt(paid)
    assert receipt["method"] == "lightning" and receipt["status"] == "success"
    assert receipt["reference"] == request["methodDetails"]["paymentHash"]
    assert receipt["challengeId"] == mpp_challenge(header)["id"]
    # Upper-case hex is the same preimage; the credential is good until it expires.
    again = client.get(
        "/api/l402/demo", HTTP_AUTHORIZATION=mpp_credential(header, preimage.upper())
    )
    assert again.status_code == 200
    assert Invoice.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"expires": "2099-01-01T00:00:00Z"}, "unknown_challenge"),  # altered echo
        ({"id": "forged"}, "unknown_challenge"),
        ({"method": "tempo"}, "unsupported_payment_method"),
    ],
)
def test_an_altered_payment_credential_gets_a_fresh_challenge(client, change, reason):
    response = client.get("/api/l402/demo")
    header = response["WWW-Authenticate"]
    preimage = pay(mpp_request(header)["methodDetails"]["invoice"])
    refused = client.get(
        "/api/l402/demo", HTTP_AUTHORIZATION=mpp_credential(header, preimage, **change)
    )
    rechallenged(refused, reason)


def test_a_payment_credential_for_something_else_or_unpaid_or_expired_is_not_enough(client):
    header = client.get("/api/l402/demo")["WWW-Authenticate"]
    preimage = pay(mpp_request(header)["methodDetails"]["invoice"])
    elsewhere = client.get(
        "/api/l402/premium-data", HTTP_AUTHORIZATION=mpp_credential(header, preimage)
    )
    assert "'demo'" in rechallenged(elsewhere, "token_out_of_scope")
    assert elsewhere.json()["amountSats"] == 100

    unpaid = client.get("/api/l402/demo")["WWW-Authenticate"]
    guessed = client.get(
        "/api/l402/demo", HTTP_AUTHORIZATION=mpp_credential(unpaid, secrets.token_hex(32))
    )
    rechallenged(guessed, "invalid_preimage")

    with override_settings(L402_TOKEN_TTL_SECONDS=0):
        short = client.get("/api/l402/demo")["WWW-Authenticate"]
    late = pay(mpp_request(short)["methodDetails"]["invoice"])
    expired = client.get("/api/l402/demo", HTTP_AUTHORIZATION=mpp_credential(short, late))
    rechallenged(expired, "token_expired")


@pytest.mark.parametrize(
    "value",
    [
        "Payment",
        "Payment !!!",
        "Payment " + base64.urlsafe_b64encode(b"[1, 2]").decode(),
        "Payment " + base64.urlsafe_b64encode(b'{"challenge": {}, "payload": {}}').decode(),
    ],
)
def test_a_malformed_payment_credential_is_a_401(client, value):
    response = client.get("/api/l402/demo", HTTP_AUTHORIZATION=value)
    assert "malformed" in problem(response, 401, "malformed_credential")


def test_a_bundles_payment_credential_opens_its_items(client, shop):
    _, key = shop
    for slug, price in (("beta", 4), ("gamma", 5)):
        publish(client, key, slug, price)
    offered = client.post(
        "/api/l402/content/bundle", {"slugs": ["beta", "gamma"]}, "application/json"
    )
    header = offered["WWW-Authenticate"]
    token = mpp_credential(header, pay(mpp_request(header)["methodDetails"]["invoice"]))
    both = client.post(
        "/api/l402/content/bundle",
        {"slugs": ["beta", "gamma"]},
        "application/json",
        HTTP_AUTHORIZATION=token,
    )
    assert both.status_code == 200 and len(both.json()["items"]) == 2
    assert client.get("/api/l402/content/gamma", HTTP_AUTHORIZATION=token).status_code == 200


def test_the_paid_ping_and_the_downloads_stats(client, shop):
    merchant, key = shop
    header = client.get("/l402/test/ping")["WWW-Authenticate"]
    request = mpp_request(header)
    assert request["amount"] == "1"
    pong = client.get(
        "/l402/test/ping",
        HTTP_AUTHORIZATION=mpp_credential(header, pay(request["methodDetails"]["invoice"])),
    )
    assert pong.status_code == 200 and pong.json()["pong"] is True

    for slug, price in (("alpha", 3), ("beta", 4), ("gamma", 5)):
        publish(client, key, slug, price)
    single = challenge_of(client.get("/api/l402/content/alpha"))
    pay(single["invoice"])
    bundle = challenge_of(
        client.post("/api/l402/content/bundle", {"slugs": ["alpha", "beta"]}, "application/json")
    )
    pay(bundle["invoice"])
    challenge_of(client.get("/api/l402/content/gamma"))  # offered, never paid
    for invoice in Invoice.objects.all():
        lightning.refresh_from_node(invoice)  # what the watcher does

    stats = client.get("/api/stats/downloads", **key).json()
    rows = {row["slug"]: row for row in stats["items"]}
    assert rows["alpha"]["downloads"] == 2 and rows["alpha"]["soldAlone"] == 1
    assert rows["alpha"]["soldInBundles"] == 1 and rows["alpha"]["revenueSats"] == 3
    assert rows["beta"]["downloads"] == 1 and rows["gamma"]["downloads"] == 0
    assert stats["bundles"] == {"sold": 1, "revenueSats": 7}
    assert stats["totalDownloads"] == 3 and stats["revenueSats"] == 10
    _, other_key = create_merchant("Other")
    assert client.get("/api/stats/downloads", HTTP_X_API_KEY=other_key).json()["items"] == []
