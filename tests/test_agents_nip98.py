"""Acting as an agent: NIP-98 HTTP auth signed by nostr-sdk, or the owning merchant's key."""
# ruff: noqa: F811  (the fixtures imported from test_agents_support are redefined as arguments)

import base64
import json
import time
from types import SimpleNamespace

import pytest

from agents import auth
from agents.models import Agent, Capability, SeenAuthEvent
from checkout.models import ApiKey
from checkout.services import create_merchant, issue_api_key
from tests.test_agents_support import (  # noqa: F401  (_fresh_limits is an autouse fixture)
    BASE,
    Signer,
    _fresh_limits,
    api,
    assert_problem,
    nostr_header,
    register,
    signed_call,
    verified_agent,
    verify,
)

pytestmark = pytest.mark.django_db

PATH = "/api/agents/capabilities"
CAPABILITY = {"serviceId": "translate", "content": "Translation", "priceSats": 10}


def _post_with(api, event, data=CAPABILITY):
    return api.generic(
        "POST",
        PATH,
        json.dumps(data).encode(),
        content_type="application/json",
        HTTP_AUTHORIZATION=nostr_header(event),
    )


def test_a_verified_agent_signs_its_request(api):
    signer = verified_agent(api)
    response = signed_call(api, signer, "POST", PATH, CAPABILITY)
    assert response.status_code == 201, response.content
    assert Capability.objects.get().agent.pubkey == signer.pubkey


def test_without_any_credentials_it_is_401(api):
    response = api.post(PATH, CAPABILITY, format="json")
    assert_problem(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Nostr"


@pytest.mark.parametrize(
    "url",
    [
        BASE + "/api/agents/requests",
        BASE + PATH + "?x=1",
        "http://evil.example" + PATH,
        "https://testserver" + PATH,
        PATH,
    ],
)
def test_wrong_url(api, url):
    signer = verified_agent(api)
    response = _post_with(api, signer.http_event("POST", url))
    assert_problem(response, 401, "nip98_wrong_url")
    assert Capability.objects.count() == 0


def test_the_public_base_url_is_accepted_behind_a_proxy(api, settings):
    settings.PUBLIC_BASE_URL = "https://pay.example.com"
    signer = verified_agent(api)
    response = _post_with(api, signer.http_event("POST", "https://pay.example.com" + PATH))
    assert response.status_code == 201, response.content


def test_query_string_is_part_of_the_signed_url(api):
    provider = verified_agent(api)
    path = f"/api/agents/requests?pubkey={provider.pubkey}"
    assert signed_call(api, provider, "GET", path).status_code == 200
    event = provider.http_event("GET", BASE + "/api/agents/requests")
    response = api.get(path, HTTP_AUTHORIZATION=nostr_header(event))
    assert_problem(response, 401, "nip98_wrong_url")


def test_wrong_method(api):
    signer = verified_agent(api)
    response = _post_with(api, signer.http_event("GET", BASE + PATH))
    assert_problem(response, 401, "nip98_wrong_method")


# With the real clock, times are far from the window's edges (the test's own delays, and
# int() of the current time, must not decide); the edges are pinned down with a fixed clock.
WINDOW = 60


@pytest.fixture(autouse=True)
def _window(settings):
    settings.AGENTS_NIP98_WINDOW_SECONDS = WINDOW


@pytest.mark.parametrize("offset", [-(WINDOW + 30), WINDOW + 30, -3600, 3600])
def test_stale_or_future_created_at(api, offset):
    signer = verified_agent(api)
    event = signer.http_event("POST", BASE + PATH, created_at=int(time.time()) + offset)
    assert_problem(_post_with(api, event), 401, "nip98_stale")


@pytest.mark.parametrize("offset", [-WINDOW // 2, WINDOW // 2])
def test_created_at_inside_the_window_is_accepted(api, offset):
    signer = verified_agent(api)
    event = signer.http_event("POST", BASE + PATH, created_at=int(time.time()) + offset)
    assert _post_with(api, event).status_code == 201


@pytest.mark.parametrize(
    "offset, accepted",
    [(-WINDOW - 1, False), (-WINDOW, True), (WINDOW, True), (WINDOW + 1, False)],
)
def test_the_window_is_exactly_its_setting(api, monkeypatch, offset, accepted):
    signer = verified_agent(api)
    now = 1_800_000_000
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: float(now)))
    event = signer.http_event("POST", BASE + PATH, created_at=now + offset)
    response = _post_with(api, event)
    if accepted:
        assert response.status_code == 201, response.content
    else:
        assert_problem(response, 401, "nip98_stale")


def test_an_id_that_is_not_the_hash_is_refused(api):
    signer = verified_agent(api)
    event = signer.http_event("POST", BASE + PATH)
    event["content"] = "changed after signing"
    assert_problem(_post_with(api, event), 401, "nip98_invalid_event_id")


def test_a_bad_signature_is_refused(api):
    signer, other = verified_agent(api), Signer()
    event = signer.http_event("POST", BASE + PATH)
    event["sig"] = other.sign(bytes.fromhex(event["id"]))  # right id, another key's signature
    assert_problem(_post_with(api, event), 401, "nip98_invalid_event_signature")
    flipped = signer.http_event("POST", BASE + PATH)
    flipped["sig"] = flipped["sig"][:-1] + ("0" if flipped["sig"][-1] != "0" else "1")
    assert_problem(_post_with(api, flipped), 401, "nip98_invalid_event_signature")


def test_an_event_claiming_another_pubkey_is_refused(api):
    signer, victim = verified_agent(api), verified_agent(api)
    event = signer.http_event("POST", BASE + PATH)
    event["pubkey"] = victim.pubkey  # the id no longer matches, nor would the signature
    response = _post_with(api, event)
    assert response.status_code == 401
    assert Capability.objects.count() == 0


def test_wrong_kind(api):
    signer = verified_agent(api)
    event = signer.event(1, tags=[["u", BASE + PATH], ["method", "POST"]])
    assert_problem(_post_with(api, event), 401, "nip98_wrong_kind")


def test_payload_tag_must_match_the_body(api):
    signer = verified_agent(api)
    event = signer.http_event("POST", BASE + PATH, body=b'{"other": "body"}')
    assert_problem(_post_with(api, event), 401, "nip98_payload_mismatch")
    assert Capability.objects.count() == 0


def test_a_replayed_event_is_refused(api):
    signer = verified_agent(api)
    event = signer.http_event("POST", BASE + PATH)
    assert _post_with(api, event).status_code == 201
    assert_problem(_post_with(api, event), 401, "nip98_replayed")
    assert SeenAuthEvent.objects.filter(event_id=event["id"]).count() == 1


@pytest.mark.parametrize(
    "header",
    [
        "Nostr",
        "Nostr !!!not-base64!!!",
        "Nostr " + base64.b64encode(b"not json").decode(),
        "Nostr " + base64.b64encode(b"\xff\xfe").decode(),
        "Nostr " + base64.b64encode(b"[1, 2]").decode(),
        "Nostr " + base64.b64encode(b'{"id": "x"}').decode(),
        "Nostr "
        + base64.b64encode(
            json.dumps(
                {
                    "id": "ab" * 32,
                    "pubkey": "ab" * 32,
                    "created_at": "now",
                    "kind": 27235,
                    "tags": [],
                    "content": "",
                    "sig": "ab" * 64,
                }
            ).encode()
        ).decode(),
    ],
)
def test_malformed_tokens_are_401_not_500(api, header):
    response = api.post(PATH, CAPABILITY, format="json", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"].startswith("nip98_malformed")


def test_an_unknown_agent_is_401(api):
    stranger = Signer()
    response = signed_call(api, stranger, "POST", PATH, CAPABILITY)
    assert_problem(response, 401, "agent_unknown")


def test_an_unverified_agent_is_403(api):
    signer = Signer()
    register(api, signer)
    response = signed_call(api, signer, "POST", PATH, CAPABILITY)
    assert_problem(response, 403, "agent_unverified")
    assert Capability.objects.count() == 0


def test_a_deactivated_agent_cannot_write(api):
    signer = verified_agent(api)
    Agent.objects.filter(pubkey=signer.pubkey).update(is_active=False)
    response = signed_call(api, signer, "POST", PATH, CAPABILITY)
    assert_problem(response, 403, "agent_inactive")
    assert Capability.objects.count() == 0


def test_a_signed_request_for_another_agents_pubkey_is_refused(api):
    signer, other = verified_agent(api), verified_agent(api)
    response = signed_call(api, signer, "POST", PATH, {**CAPABILITY, "pubkey": other.pubkey})
    assert_problem(response, 403, "forbidden")


def test_a_merchant_acts_for_the_agents_whose_keys_signed_its_challenge(api):
    merchant, admin_key = create_merchant("Shop")
    _, invoice_key = issue_api_key(merchant, ApiKey.Kind.INVOICE, "inv")
    _, other_key = create_merchant("Other shop")
    signer = Signer()
    register(api, signer, HTTP_X_API_KEY=admin_key)
    body = {**CAPABILITY, "pubkey": signer.pubkey}

    unproven = api.post(PATH, body, format="json", HTTP_X_API_KEY=admin_key)
    assert_problem(unproven, 404, "not_found")
    verify(api, signer, HTTP_X_API_KEY=admin_key)

    assert api.post(PATH, body, format="json", HTTP_X_API_KEY=admin_key).status_code == 201
    not_theirs = api.post(PATH, body, format="json", HTTP_X_API_KEY=other_key)
    assert_problem(not_theirs, 404, "not_found")
    read_only_key = api.post(PATH, body, format="json", HTTP_X_API_KEY=invoice_key)
    assert_problem(read_only_key, 403, "forbidden")
    # Its only agent acts when none is named; the other shop acts for none.
    only_agent = api.post(
        PATH, {**CAPABILITY, "serviceId": "second"}, format="json", HTTP_X_API_KEY=admin_key
    )
    assert only_agent.status_code == 201, only_agent.content
    assert Capability.objects.get(service_id="second").agent.pubkey == signer.pubkey
    assert_problem(
        api.post(PATH, CAPABILITY, format="json", HTTP_X_API_KEY=other_key), 400, "no_agent"
    )
    second = Signer()
    register(api, second, HTTP_X_API_KEY=admin_key)
    verify(api, second, HTTP_X_API_KEY=admin_key)
    which_agent = api.post(PATH, CAPABILITY, format="json", HTTP_X_API_KEY=admin_key)
    assert_problem(which_agent, 400, "validation_error")
    assert signer.pubkey in which_agent.json()["detail"]
    assert sorted(which_agent.json()["agents"]) == sorted([signer.pubkey, second.pubkey])
    assert Capability.objects.count() == 2


def test_a_merchant_cannot_act_for_a_self_registered_agent(api):
    _, admin_key = create_merchant("Shop")
    signer = verified_agent(api)
    response = api.post(
        PATH, {**CAPABILITY, "pubkey": signer.pubkey}, format="json", HTTP_X_API_KEY=admin_key
    )
    assert_problem(response, 404, "not_found")
