"""Who owns an agent: only a proof by the agent's key makes a merchant its owner, and nobody
can squat a key by registering it first.

Every step goes through the HTTP API; the victim's and the agents' signatures are made by
nostr-sdk (tests/test_agents_support.py), independently of the code under test.
"""
# ruff: noqa: F811  (the fixtures imported from test_agents_support are redefined as arguments)

import json

import pytest

from agents.models import Agent, Capability
from checkout.models import ApiKey
from checkout.services import create_merchant, issue_api_key
from tests.test_agents_support import (  # noqa: F401  (_fresh_limits is an autouse fixture)
    BASE,
    Signer,
    _fresh_limits,
    api,
    assert_problem,
    challenge_for,
    nostr_header,
    register,
    signed_call,
    verify,
)

pytestmark = pytest.mark.django_db

CAPABILITIES = "/api/agents/capabilities"
CAPABILITY = {"serviceId": "translate", "content": "Translation", "priceSats": 10}


def _publish_for(api, key, signer):
    return api.post(
        CAPABILITIES, {**CAPABILITY, "pubkey": signer.pubkey}, format="json", HTTP_X_API_KEY=key
    )


def _verify_with(api, signer, challenge, signature=None, **extra):
    return api.post(
        "/api/agents/verify",
        {
            "pubkey": signer.pubkey,
            "challenge": challenge,
            "signature": signature or signer.sign(bytes.fromhex(challenge)),
        },
        format="json",
        **extra,
    )


def _signed_register(api, signer, body):
    """POST /api/agents/register signed with NIP-98 by `signer`, over the exact body."""
    raw = json.dumps(body).encode()
    event = signer.http_event("POST", BASE + "/api/agents/register", raw)
    return api.generic(
        "POST",
        "/api/agents/register",
        raw,
        content_type="application/json",
        HTTP_AUTHORIZATION=nostr_header(event),
    )


# --- the takeover that registering someone else's key used to allow -------------------------


def test_registering_someone_elses_key_gives_no_power_over_it(api):
    _, attacker_key = create_merchant("Merchant B")
    victim = Signer()

    claimed = api.post(
        "/api/agents/register",
        {"pubkey": victim.pubkey, "name": "Victim bot"},
        format="json",
        HTTP_X_API_KEY=attacker_key,
    )
    assert claimed.status_code == 201, claimed.content
    # B asks for a challenge bound to its claim, but cannot sign it with the victim's key.
    bound = challenge_for(api, victim, HTTP_X_API_KEY=attacker_key)
    forged = _verify_with(api, victim, bound, Signer().sign(bytes.fromhex(bound)))
    assert_problem(forged, 400, "invalid_signature")

    # The real key holder proves its key, as it always did.
    assert verify(api, victim)["isVerified"] is True

    refused = _publish_for(api, attacker_key, victim)
    assert_problem(refused, 404, "not_found")
    assert Capability.objects.count() == 0
    assert Agent.objects.get(pubkey=victim.pubkey).owner is None
    # The victim itself acts for its key.
    assert signed_call(api, victim, "POST", CAPABILITIES, CAPABILITY).status_code == 201
    assert Capability.objects.get().agent.pubkey == victim.pubkey


def test_a_proof_for_one_merchant_does_not_bind_another(api):
    """The victim signs a challenge a merchant of its own asked for: that binds that
    merchant, never the one that registered the key first."""
    _, attacker_key = create_merchant("Merchant B")
    victims_shop, victims_key = create_merchant("Victim's shop")
    victim = Signer()
    register(api, victim, HTTP_X_API_KEY=attacker_key)

    challenge = challenge_for(api, victim, HTTP_X_API_KEY=victims_key)
    assert _verify_with(api, victim, challenge).status_code == 200

    assert Agent.objects.get(pubkey=victim.pubkey).owner == victims_shop
    assert_problem(_publish_for(api, attacker_key, victim), 404, "not_found")
    assert _publish_for(api, victims_key, victim).status_code == 201


# --- squatting ------------------------------------------------------------------------------


def test_an_unproven_registration_does_not_block_the_key_holder(api):
    holder = Signer()
    register(api, holder, name="Scam bot")  # someone else registers the holder's key first

    again = api.post(
        "/api/agents/register",
        {"pubkey": holder.pubkey, "name": "Translator", "description": "the real one"},
        format="json",
    )
    assert again.status_code == 200, again.content
    assert again.json()["name"] == "Translator" and again.json()["isVerified"] is False
    verify(api, holder)

    agent = api.get(f"/api/agents/{holder.pubkey}").json()
    assert (agent["name"], agent["description"], agent["isVerified"]) == (
        "Translator",
        "the real one",
        True,
    )
    # Once the key has proven itself, an unsigned registration changes nothing.
    late = api.post(
        "/api/agents/register", {"pubkey": holder.pubkey, "name": "Scam bot"}, format="json"
    )
    assert_problem(late, 409, "agent_exists")
    assert Agent.objects.get(pubkey=holder.pubkey).name == "Translator"


def test_a_registration_signed_by_the_key_is_verified_and_final(api):
    holder = Signer()
    register(api, holder, name="Scam bot")

    signed = _signed_register(api, holder, {"pubkey": holder.pubkey, "name": "Translator"})
    assert signed.status_code == 200, signed.content
    assert signed.json()["name"] == "Translator" and signed.json()["isVerified"] is True
    assert_problem(
        api.post("/api/agents/register", {"pubkey": holder.pubkey, "name": "x"}, format="json"),
        409,
        "agent_exists",
    )
    # The key may change its own details again; a fresh key registers verified at once.
    renamed = _signed_register(api, holder, {"pubkey": holder.pubkey, "name": "Translator 2"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Translator 2"
    newcomer = Signer()
    created = _signed_register(api, newcomer, {"pubkey": newcomer.pubkey, "name": "New"})
    assert created.status_code == 201 and created.json()["isVerified"] is True
    assert signed_call(api, newcomer, "POST", CAPABILITIES, CAPABILITY).status_code == 201


def test_a_signed_registration_must_be_by_that_key_and_over_the_body(api):
    holder, other = Signer(), Signer()
    wrong_key = _signed_register(api, other, {"pubkey": holder.pubkey, "name": "Mine"})
    assert_problem(wrong_key, 403, "forbidden")
    raw = json.dumps({"pubkey": holder.pubkey, "name": "Mine"}).encode()
    unsigned_body = holder.http_event("POST", BASE + "/api/agents/register")  # no payload tag
    response = api.generic(
        "POST",
        "/api/agents/register",
        raw,
        content_type="application/json",
        HTTP_AUTHORIZATION=nostr_header(unsigned_body),
    )
    assert_problem(response, 401, "nip98_payload_required")
    assert not Agent.objects.exists()


def test_a_deactivated_agent_is_not_re_registered(api):
    holder = Signer()
    register(api, holder, name="Scam bot")
    Agent.objects.filter(pubkey=holder.pubkey).update(is_active=False)  # the operator's call
    unsigned = api.post(
        "/api/agents/register", {"pubkey": holder.pubkey, "name": "Back"}, format="json"
    )
    assert_problem(unsigned, 403, "agent_inactive")
    signed = _signed_register(api, holder, {"pubkey": holder.pubkey, "name": "Back"})
    assert_problem(signed, 403, "agent_inactive")
    assert Agent.objects.get(pubkey=holder.pubkey).name == "Scam bot"


# --- the legitimate merchant flow -----------------------------------------------------------


def test_a_merchant_owns_an_agent_once_its_key_signs_the_merchants_challenge(api):
    shop, admin_key = create_merchant("Shop")
    _, invoice_key = issue_api_key(shop, ApiKey.Kind.INVOICE, "inv")
    agent = Signer()
    register(api, agent, HTTP_X_API_KEY=admin_key)
    assert_problem(_publish_for(api, admin_key, agent), 404, "not_found")  # a claim, no proof

    assert_problem(
        api.get("/api/agents/challenge", {"pubkey": agent.pubkey}, HTTP_X_API_KEY=invoice_key),
        403,
        "forbidden",
    )
    challenge = challenge_for(api, agent, HTTP_X_API_KEY=admin_key)
    verified = _verify_with(api, agent, challenge)
    assert verified.status_code == 200, verified.content
    assert verified.json()["isVerified"] is True

    assert Agent.objects.get(pubkey=agent.pubkey).owner == shop
    assert _publish_for(api, admin_key, agent).status_code == 201


def test_the_key_moves_its_agent_to_another_merchant(api):
    first, first_key = create_merchant("First shop")
    second, second_key = create_merchant("Second shop")
    agent = Signer()
    register(api, agent)
    _verify_with(api, agent, challenge_for(api, agent, HTTP_X_API_KEY=first_key))
    assert Agent.objects.get(pubkey=agent.pubkey).owner == first

    # A verification without a merchant keeps the owner the key chose.
    verify(api, agent)
    assert Agent.objects.get(pubkey=agent.pubkey).owner == first

    _verify_with(api, agent, challenge_for(api, agent, HTTP_X_API_KEY=second_key))
    assert Agent.objects.get(pubkey=agent.pubkey).owner == second
    assert_problem(_publish_for(api, first_key, agent), 404, "not_found")
    assert _publish_for(api, second_key, agent).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_forgets_owners_that_no_key_chose():
    """Owners recorded before this rule came from registrations alone: none is kept."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("agents", "0001_initial")], [("agents", "0002_owner_follows_proof")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    merchant = old.get_model("checkout", "Merchant").objects.create(name="Shop")
    old.get_model("agents", "Agent").objects.create(pubkey=Signer().pubkey, owner=merchant)

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    assert Agent.objects.get().owner is None
