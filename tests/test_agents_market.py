"""Capabilities, discovery, requests, agreements, attestations, stats and the admin."""
# ruff: noqa: F811  (the fixtures imported from test_agents_support are redefined as arguments)

import pytest
from django.contrib.auth import get_user_model

from agents import nostr, services
from agents.models import Agent, Agreement, Attestation, Capability, ServiceRequest
from tests.test_agents_support import (  # noqa: F401  (_fresh_limits is an autouse fixture)
    Signer,
    _fresh_limits,
    api,
    assert_problem,
    signed_call,
    verified_agent,
)

pytestmark = pytest.mark.django_db

CAPS = "/api/agents/capabilities"


def publish(api, signer, service_id="translate", **fields):
    body = {"serviceId": service_id, "content": "Translation", "priceSats": 10, **fields}
    response = signed_call(api, signer, "POST", CAPS, body)
    assert response.status_code == 201, response.content
    return response.json()


def ask(api, requester, capability_event_id, budget=100, parameters=None):
    body = {
        "capabilityEventId": capability_event_id,
        "budgetSats": budget,
        "parameters": parameters or {"text": "hola"},
    }
    response = signed_call(api, requester, "POST", "/api/agents/requests", body)
    assert response.status_code == 201, response.content
    return response.json()


def accept(api, provider, request_event_id, price=500, terms="within an hour"):
    body = {"requestEventId": request_event_id, "priceSats": price, "terms": terms}
    response = signed_call(api, provider, "POST", "/api/agents/agreements", body)
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def deal(api):
    """A provider with a capability, a requester, a request and an active agreement."""
    provider, requester = verified_agent(api, "Provider"), verified_agent(api, "Requester")
    capability = publish(api, provider, l402Endpoint="https://provider.example/l402/translate")
    request = ask(api, requester, capability["eventId"])
    agreement = accept(api, provider, request["requestEventId"])
    return provider, requester, capability, request, agreement


# --- capabilities --------------------------------------------------------------------------


def test_publish_answers_a_stable_event_id(api):
    provider = verified_agent(api)
    first = publish(api, provider, l402Endpoint="/l402/translate")
    assert len(first["eventId"]) == 64 and bytes.fromhex(first["eventId"])
    assert first["l402Endpoint"] == "/l402/translate"
    assert publish(api, provider, l402Endpoint="/l402/translate")["eventId"] == first["eventId"]
    assert publish(api, provider)["l402Endpoint"] is None


def test_publishing_the_same_service_id_replaces_it(api):
    provider = verified_agent(api)
    old = publish(api, provider, content="Old text", priceSats=10)
    new = publish(api, provider, content="New text", priceSats=20)
    assert new["eventId"] != old["eventId"]
    assert Capability.objects.count() == 1
    items = api.get(CAPS).json()["items"]
    assert [(i["eventId"], i["content"], i["priceSats"]) for i in items] == [
        (new["eventId"], "New text", 20)
    ]


def test_a_signed_event_gives_the_item_its_id(api):
    provider, other = verified_agent(api), Signer()
    event = provider.event(31990, "Translation", tags=[["d", "translate"]])
    assert publish(api, provider, event=event)["eventId"] == event["id"]

    foreign = other.event(31990, "Translation", tags=[["d", "translate"]])
    response = signed_call(
        api, provider, "POST", CAPS, {"serviceId": "x", "priceSats": 1, "event": foreign}
    )
    assert_problem(response, 400, "event_pubkey_mismatch")
    tampered = provider.event(31990, "Translation")
    tampered["content"] = "something else"
    response = signed_call(
        api, provider, "POST", CAPS, {"serviceId": "y", "priceSats": 1, "event": tampered}
    )
    assert_problem(response, 400, "invalid_event_id")
    assert Capability.objects.count() == 1


def test_the_derived_id_is_the_hash_of_the_item(api):
    provider = verified_agent(api)
    published = publish(api, provider, categories=["ai"], hashtags=["nlp"])
    expected = nostr.canonical_id(
        {
            "type": "capability",
            "pubkey": provider.pubkey,
            "serviceId": "translate",
            "content": "Translation",
            "categories": ["ai"],
            "hashtags": ["nlp"],
            "price_sats": 10,
            "l402_endpoint": "",
            "target_url": "",
        }
    )
    assert published["eventId"] == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"priceSats": -1},
        {"priceSats": "ten"},
        {"serviceId": ""},
        {"serviceId": "s" * 201},
        {"categories": ["a|b"]},
        {"hashtags": ["a,b"]},
        {"hashtags": "nlp"},
        {"l402Endpoint": "javascript:alert(1)"},
        {"targetUrl": "ftp://example.com"},
        {"content": "x" * 5001},
        {"event": "not an event"},
        {"event": {"id": 1}},
    ],
)
def test_bad_capabilities_are_400_and_write_nothing(api, fields):
    provider = verified_agent(api)
    body = {"serviceId": "translate", "priceSats": 10, **fields}
    response = signed_call(api, provider, "POST", CAPS, body)
    assert response.status_code == 400, response.content
    assert Capability.objects.count() == 0


def test_take_down_a_capability(api):
    provider = verified_agent(api)
    publish(api, provider)
    response = signed_call(api, provider, "DELETE", f"{CAPS}/translate")
    assert response.status_code == 204
    assert api.get(CAPS).json() == {"items": [], "total": 0}
    assert_problem(signed_call(api, provider, "DELETE", f"{CAPS}/translate"), 404, "not_found")
    other = verified_agent(api)
    publish(api, provider, service_id="summarize")
    assert_problem(signed_call(api, other, "DELETE", f"{CAPS}/summarize"), 404, "not_found")
    publish(api, provider)  # publishing again brings it back
    assert api.get(CAPS).json()["total"] == 2


def test_discovery_filters(api):
    alice, bob = verified_agent(api, "Alice"), verified_agent(api, "Bob")
    publish(api, alice, "translate", categories=["Language"], hashtags=["nlp", "spanish"])
    publish(api, alice, "summarize", content="Summaries", categories=["language"], hashtags=["nlp"])
    publish(api, bob, "weather", content="Forecasts", categories=["data"], hashtags=["geo"])

    def ids(**params):
        return sorted(i["serviceId"] for i in api.get(CAPS, params).json()["items"])

    assert ids() == ["summarize", "translate", "weather"]
    assert ids(category="language") == ["summarize", "translate"]
    assert ids(category="lang") == []  # whole categories only
    assert ids(hashtags="nlp") == ["summarize", "translate"]
    assert ids(hashtags="nlp, spanish") == ["translate"]
    assert ids(hashtags="nlp,geo") == []
    assert ids(q="forecast") == ["weather"]
    assert ids(q="bob") == ["weather"]
    item = api.get(CAPS, {"q": "forecast"}).json()["items"][0]
    assert item.keys() == {
        "eventId",
        "serviceId",
        "pubkey",
        "content",
        "categories",
        "hashtags",
        "priceSats",
        "l402Endpoint",
        "createdAt",
    }
    assert item["pubkey"] == bob.pubkey and item["categories"] == ["data"]
    assert item["l402Endpoint"] is None


def test_discovery_limit(api):
    provider = verified_agent(api)
    for number in range(23):
        publish(api, provider, f"service-{number}")
    assert len(api.get(CAPS).json()["items"]) == 20
    page = api.get(CAPS, {"limit": 100}).json()
    assert page["total"] == 23 and len(page["items"]) == 23
    assert len(api.get(CAPS, {"limit": 5}).json()["items"]) == 5
    assert_problem(api.get(CAPS, {"limit": 101}), 400, "validation_error")
    assert_problem(api.get(CAPS, {"limit": 0}), 400, "validation_error")
    assert_problem(api.get(CAPS, {"limit": "many"}), 400, "validation_error")
    assert_problem(api.get(CAPS, {"category": "a|b"}), 400, "validation_error")


def test_a_deactivated_agent_is_hidden_from_discovery(api):
    provider = verified_agent(api)
    publish(api, provider)
    services.set_agent_active(Agent.objects.get(pubkey=provider.pubkey), False)
    assert api.get(CAPS).json()["total"] == 0
    assert api.get(f"/api/agents/{provider.pubkey}").json()["isActive"] is False


# --- requests and agreements ---------------------------------------------------------------


def test_a_request_reaches_the_provider(api):
    provider, requester = verified_agent(api), verified_agent(api)
    capability = publish(api, provider, l402Endpoint="https://p.example/l402")
    created = ask(api, requester, capability["eventId"], budget=250, parameters={"lang": "es"})
    assert len(created["requestEventId"]) == 64
    assert created["l402Endpoint"] == "https://p.example/l402"
    incoming = signed_call(api, provider, "GET", "/api/agents/requests").json()
    assert incoming["total"] == 1
    item = incoming["items"][0]
    assert item["requestEventId"] == created["requestEventId"]
    assert item["requesterPubkey"] == requester.pubkey
    assert (item["budgetSats"], item["parameters"], item["agreementId"]) == (
        250,
        {"lang": "es"},
        None,
    )
    # The requester's own incoming list does not show it.
    assert signed_call(api, requester, "GET", "/api/agents/requests").json()["total"] == 0
    assert_problem(api.get("/api/agents/requests"), 401, "unauthorized")


def test_requests_need_a_live_capability_of_another_agent(api):
    provider, requester = verified_agent(api), verified_agent(api)
    capability = publish(api, provider)
    body = {"capabilityEventId": capability["eventId"], "budgetSats": 1}
    own = signed_call(api, provider, "POST", "/api/agents/requests", body)
    assert_problem(own, 400, "own_capability")
    unknown = signed_call(
        api, requester, "POST", "/api/agents/requests", {**body, "capabilityEventId": "ab" * 32}
    )
    assert_problem(unknown, 404, "not_found")
    signed_call(api, provider, "DELETE", f"{CAPS}/translate")
    gone = signed_call(api, requester, "POST", "/api/agents/requests", body)
    assert_problem(gone, 404, "not_found")
    bad = signed_call(
        api, requester, "POST", "/api/agents/requests", {**body, "parameters": {"a": "\x00"}}
    )
    assert_problem(bad, 400, "validation_error")
    assert ServiceRequest.objects.count() == 0


def test_the_provider_accepts_a_request_into_an_agreement(api, deal):
    provider, requester, _, request, agreement = deal
    assert agreement["status"] == "active"
    assert agreement["requestEventId"] == request["requestEventId"]
    assert (agreement["providerPubkey"], agreement["requesterPubkey"]) == (
        provider.pubkey,
        requester.pubkey,
    )
    assert (agreement["priceSats"], agreement["terms"]) == (500, "within an hour")
    assert len(agreement["agreementId"]) == 64
    again = signed_call(
        api,
        provider,
        "POST",
        "/api/agents/agreements",
        {"requestEventId": request["requestEventId"], "priceSats": 1},
    )
    assert_problem(again, 409, "request_already_accepted")
    by_requester = signed_call(
        api,
        requester,
        "POST",
        "/api/agents/agreements",
        {"requestEventId": request["requestEventId"], "priceSats": 1},
    )
    assert_problem(by_requester, 404, "not_found")
    incoming = signed_call(api, provider, "GET", "/api/agents/requests").json()["items"]
    assert incoming[0]["agreementId"] == agreement["agreementId"]
    assert Agreement.objects.count() == 1


def test_either_party_closes_an_agreement_once(api, deal):
    provider, requester, _, _, agreement = deal
    path = f"/api/agents/agreements/{agreement['agreementId']}"
    stranger = verified_agent(api)
    assert_problem(signed_call(api, stranger, "POST", path + "/cancel", {}), 404, "not_found")
    completed = signed_call(api, requester, "POST", path + "/complete", {})
    assert completed.status_code == 200
    assert completed.json()["status"] == "completed" and completed.json()["completedAt"]
    cancel = signed_call(api, provider, "POST", path + "/cancel", {})
    assert_problem(cancel, 409, "agreement_not_active")
    assert Agreement.objects.get().status == "completed"


def test_agreements_are_listed_by_party_and_status(api, deal):
    provider, requester, capability, _, agreement = deal
    second = ask(api, requester, capability["eventId"])
    other = accept(api, provider, second["requestEventId"], price=42)
    signed_call(api, provider, "POST", f"/api/agents/agreements/{other['agreementId']}/cancel", {})

    def listed(signer, query=""):
        response = signed_call(api, signer, "GET", "/api/agents/agreements" + query)
        assert response.status_code == 200, response.content
        return [a["agreementId"] for a in response.json()["items"]]

    assert sorted(listed(provider)) == sorted([agreement["agreementId"], other["agreementId"]])
    assert listed(requester, "?status=active") == [agreement["agreementId"]]
    assert listed(provider, "?status=cancelled") == [other["agreementId"]]
    assert listed(verified_agent(api)) == []
    bad = signed_call(api, provider, "GET", "/api/agents/agreements?status=lost")
    assert_problem(bad, 400, "validation_error")


# --- attestations --------------------------------------------------------------------------


def _attest(api, reviewer, subject_pubkey, agreement_id, rating=5, **fields):
    body = {
        "subjectPubkey": subject_pubkey,
        "agreementId": agreement_id,
        "rating": rating,
        "content": "Great work",
        "proof": "preimage:abcd",
        **fields,
    }
    return signed_call(api, reviewer, "POST", "/api/agents/attestations", body)


def test_only_a_party_attests_and_only_once(api, deal):
    provider, requester, _, _, agreement = deal
    stranger = verified_agent(api)
    response = _attest(api, stranger, provider.pubkey, agreement["agreementId"])
    assert_problem(response, 403, "not_a_party")
    response = _attest(api, requester, requester.pubkey, agreement["agreementId"])
    assert_problem(response, 400, "wrong_subject")

    first = _attest(api, requester, provider.pubkey, agreement["agreementId"], rating=4)
    assert first.status_code == 201
    assert len(first.json()["eventId"]) == 64
    second = _attest(api, requester, provider.pubkey, agreement["agreementId"], rating=1)
    assert_problem(second, 409, "already_attested")
    back = _attest(api, provider, requester.pubkey, agreement["agreementId"])
    assert back.status_code == 201
    assert Attestation.objects.count() == 2

    about_provider = api.get("/api/agents/attestations", {"pubkey": provider.pubkey}).json()
    assert about_provider["items"] == [
        {
            "eventId": first.json()["eventId"],
            "pubkey": requester.pubkey,
            "rating": 4,
            "content": "Great work",
            "agreementId": agreement["agreementId"],
            "proof": "preimage:abcd",
            "createdAt": about_provider["items"][0]["createdAt"],
        }
    ]


@pytest.mark.parametrize("rating", [0, 6, -1, "five", None, 4.5])
def test_rating_is_1_to_5(api, deal, rating):
    provider, requester, _, _, agreement = deal
    response = _attest(api, requester, provider.pubkey, agreement["agreementId"], rating=rating)
    assert_problem(response, 400, "validation_error")
    assert Attestation.objects.count() == 0


def test_attesting_an_unknown_agreement(api, deal):
    provider, requester, *_ = deal
    response = _attest(api, requester, provider.pubkey, "cd" * 32)
    assert_problem(response, 404, "not_found")


# --- stats ---------------------------------------------------------------------------------


def test_stats_are_computed_from_the_records(api, deal):
    provider, requester, capability, _, agreement = deal
    signed_call(
        api, requester, "POST", f"/api/agents/agreements/{agreement['agreementId']}/complete", {}
    )
    second = ask(api, requester, capability["eventId"])
    accept(api, provider, second["requestEventId"], price=300)  # active: not revenue yet
    row = Capability.objects.get(event_id=capability["eventId"])
    services.record_capability_payment(row, 100, "aa" * 32)
    services.record_capability_payment(row, 100, "aa" * 32)  # delivered twice, counted once

    stats = api.get(f"/api/agents/{provider.pubkey}/stats").json()
    assert stats["totalRequests"] == 3  # two requests and one paid call
    assert stats["totalRevenueSats"] == 600  # the completed agreement and the paid call
    assert stats["activeAgreements"] == 1
    assert stats["averageRevenuePerRequest"] == 200.0
    assert stats["pubkey"] == provider.pubkey and stats["name"] == "Provider"
    assert stats["isActive"] is True and stats["registeredAt"] and stats["lastUpdated"]

    agent = api.get(f"/api/agents/{provider.pubkey}").json()
    assert (agent["totalRequests"], agent["totalRevenueSats"], agent["activeAgreements"]) == (
        3,
        600,
        1,
    )
    listed = {a["pubkey"]: a for a in api.get("/api/agents").json()["agents"]}
    assert listed[requester.pubkey]["activeAgreements"] == 1
    assert listed[requester.pubkey]["totalRequests"] == 0
    assert listed[provider.pubkey]["totalRevenueSats"] == 600


def test_stats_of_a_new_agent(api):
    signer = verified_agent(api)
    stats = api.get(f"/api/agents/{signer.pubkey}/stats").json()
    assert (stats["totalRequests"], stats["totalRevenueSats"], stats["activeAgreements"]) == (
        0,
        0,
        0,
    )
    assert stats["averageRevenuePerRequest"] == 0.0


# --- admin ---------------------------------------------------------------------------------


def test_the_operator_sees_the_registry_and_deactivates_an_agent(api, client, deal):
    provider, requester, *_ = deal
    admin = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    client.force_login(admin)
    for model in ("agent", "capability", "agreement", "attestation", "servicerequest"):
        assert client.get(f"/admin/agents/{model}/").status_code == 200
    agent = Agent.objects.get(pubkey=provider.pubkey)
    assert client.get(f"/admin/agents/agent/{agent.pk}/change/").status_code == 200
    response = client.post(
        "/admin/agents/agent/",
        {"action": "deactivate", "_selected_action": [agent.pk]},
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.is_active is False
    assert api.get(CAPS).json()["total"] == 0
    refused = signed_call(api, provider, "POST", CAPS, {"serviceId": "new", "priceSats": 1})
    assert_problem(refused, 403, "agent_inactive")
