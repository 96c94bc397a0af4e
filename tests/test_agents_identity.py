"""Agent identity: registration, challenges, BIP-340 verification, listing, rate limits."""
# ruff: noqa: F811  (the fixtures imported from test_agents_support are redefined as arguments)

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agents import nostr, services
from agents.models import Agent, Challenge
from checkout.models import ApiKey
from checkout.services import create_merchant, issue_api_key
from config.problems import Problem
from tests.test_agents_support import (  # noqa: F401  (_fresh_limits is an autouse fixture)
    PROBLEM,
    Signer,
    _fresh_limits,
    api,
    assert_problem,
    challenge_for,
    register,
    verify,
)

pytestmark = pytest.mark.django_db

# Official BIP-340 test vectors (bitcoin/bips, bip-0340/test-vectors.csv, final version):
# (index, secret key, public key, message, signature, verification result).
BIP340_VECTORS = [
    (
        0,
        "0000000000000000000000000000000000000000000000000000000000000003",
        "F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA8215"
        "25F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0",
        True,
    ),
    (
        1,
        "B7E151628AED2A6ABF7158809CF4F3C762E7160F38B4DA56A784D9045190CFEF",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6896BD60EEAE296DB48A229FF71DFE071BDE413E6D43F917DC8DCF8C78DE3341"
        "8906D11AC976ABCCB20B091292BFF4EA897EFCB639EA871CFA95F6DE339E4B0A",
        True,
    ),
    (
        2,
        "C90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B14E5C9",
        "DD308AFEC5777E13121FA72B9CC1B7CC0139715309B086C960E18FD969774EB8",
        "7E2D58D8B3BCDF1ABADEC7829054F90DDA9805AAB56C77333024B9D0A508B75C",
        "5831AAEED7B44BB74E5EAB94BA9D4294C49BCF2A60728D8B4C200F50DD313C1B"
        "AB745879A5AD954A72C45A91C3A51D3C7ADEA98D82F8481E0E1E03674A6F3FB7",
        True,
    ),
    (
        7,
        None,
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "1FA62E331EDBC21C394792D2AB1100A7B432B013DF3F6FF4F99FCB33E0E1515F"
        "28890B3EDB6E7189B630448B515CE4F8622A954CFE545735AAEA5134FCCDB2BD",
        False,  # negated message
    ),
    (
        8,
        None,
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769"
        "961764B3AA9B2FFCB6EF947B6887A226E8D7C93E00C5ED0C1834FF0D0C2E6DA6",
        False,  # negated s value
    ),
    (
        13,
        None,
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769"
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        False,  # sig[32:64] is equal to the curve order
    ),
]
# Vector 5: public key not on the curve; vector 14: exceeds the field size.
NOT_ON_CURVE = "EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34"
BEYOND_FIELD = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC30"
# x = 5: 5^3 + 7 = 132 is not a square modulo p, so no point has this x.
X_FIVE = "00" * 31 + "05"


def _not_a_square(x_hex: str) -> bool:
    p = 2**256 - 2**32 - 977
    return pow((int(x_hex, 16) ** 3 + 7) % p, (p - 1) // 2, p) != 1


@pytest.mark.parametrize("index,secret,pubkey,message,signature,result", BIP340_VECTORS)
def test_bip340_official_vectors(index, secret, pubkey, message, signature, result):
    assert nostr.schnorr_valid(pubkey.lower(), signature.lower(), bytes.fromhex(message)) is result
    if secret:  # nostr-sdk derives the same key from the vector's secret
        assert Signer(secret.lower()).pubkey == pubkey.lower()


def test_register_answers_the_agent_object(api):
    signer = Signer()
    body = register(api, signer, name="Weather bot")
    assert body["id"].startswith("agt_")
    assert body["pubkey"] == signer.pubkey
    assert body["name"] == "Weather bot"
    assert body["isActive"] is True
    assert body["isVerified"] is False
    assert body["verifiedAt"] is None
    assert (body["totalRequests"], body["totalRevenueSats"], body["activeAgreements"]) == (0, 0, 0)
    assert {"createdAt", "updatedAt", "description"} <= body.keys()
    assert Agent.objects.get(pubkey=signer.pubkey).owner is None


@pytest.mark.parametrize(
    "pubkey",
    [
        "ab" * 31 + "a",  # 63 characters
        "ab" * 32 + "a",  # 65 characters
        "",
        "zz" * 32,  # 64 characters, not hex
        " " + "ab" * 31 + "a",
        X_FIVE,
        NOT_ON_CURVE,
        BEYOND_FIELD,
        "00" * 32,
    ],
)
def test_register_refuses_keys_that_are_not_xonly_points(api, pubkey):
    response = api.post("/api/agents/register", {"pubkey": pubkey}, format="json")
    assert_problem(response, 400, "validation_error")
    assert "pubkey" in response.json()["errors"]
    assert Agent.objects.count() == 0


def test_the_not_on_curve_keys_really_are_not_points():
    assert _not_a_square(X_FIVE) and _not_a_square(NOT_ON_CURVE)


def test_register_accepts_upper_case_hex_and_stores_it_lower_case(api):
    pubkey = BIP340_VECTORS[1][2]
    response = api.post("/api/agents/register", {"pubkey": pubkey}, format="json")
    assert response.status_code == 201
    assert response.json()["pubkey"] == pubkey.lower()
    again = api.post("/api/agents/register", {"pubkey": pubkey.lower()}, format="json")
    assert again.status_code == 200  # the same agent: its unproven details rewritten
    assert Agent.objects.count() == 1


def test_name_and_description_limits(api):
    ok = api.post(
        "/api/agents/register",
        {"pubkey": Signer().pubkey, "name": "n" * 200, "description": "d" * 1000},
        format="json",
    )
    assert ok.status_code == 201
    long_name = api.post(
        "/api/agents/register", {"pubkey": Signer().pubkey, "name": "n" * 201}, format="json"
    )
    assert_problem(long_name, 400, "validation_error")
    assert "name" in long_name.json()["errors"]
    long_description = api.post(
        "/api/agents/register",
        {"pubkey": Signer().pubkey, "description": "d" * 1001},
        format="json",
    )
    assert_problem(long_description, 400, "validation_error")
    assert "description" in long_description.json()["errors"]
    nulls = api.post(
        "/api/agents/register",
        {"pubkey": Signer().pubkey, "name": None, "description": None},
        format="json",
    )
    assert nulls.status_code == 201 and nulls.json()["name"] == ""
    assert Agent.objects.count() == 2


def test_registering_a_verified_pubkey_again_is_a_conflict(api):
    signer = Signer()
    register(api, signer)
    verify(api, signer)
    assert_problem(
        api.post("/api/agents/register", {"pubkey": signer.pubkey}, format="json"),
        409,
        "agent_exists",
    )
    assert Agent.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"pubkey": 12}', b'{"pubkey": ["a"]}', b"{}", b'"x"'],
)
def test_register_survives_garbage(api, body):
    response = api.generic("POST", "/api/agents/register", body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM


def test_registering_with_an_admin_key_makes_no_owner(api):
    merchant, admin_key = create_merchant("Shop")
    _, invoice_key = issue_api_key(merchant, ApiKey.Kind.INVOICE, "inv")
    signer = Signer()
    register(api, signer, HTTP_X_API_KEY=admin_key)
    assert Agent.objects.get(pubkey=signer.pubkey).owner is None  # until the key signs
    refused = api.post(
        "/api/agents/register",
        {"pubkey": Signer().pubkey},
        format="json",
        HTTP_X_API_KEY=invoice_key,
    )
    assert_problem(refused, 403, "forbidden")
    unknown = api.post(
        "/api/agents/register", {"pubkey": Signer().pubkey}, format="json", HTTP_X_API_KEY="zz"
    )
    assert_problem(unknown, 401, "unauthorized")
    assert Agent.objects.count() == 1


def test_challenge_is_random_hex_bound_to_the_key(api, settings):
    signer = Signer()
    register(api, signer)
    response = api.get("/api/agents/challenge", {"pubkey": signer.pubkey})
    assert response.status_code == 200
    body = response.json()
    assert body["pubkey"] == signer.pubkey
    assert body["expiresInSeconds"] == settings.AGENTS_CHALLENGE_TTL_SECONDS > 0
    assert len(body["challenge"]) == 64 and bytes.fromhex(body["challenge"])
    assert challenge_for(api, signer) != body["challenge"]


def test_challenge_for_unknown_or_malformed_key(api):
    assert_problem(api.get("/api/agents/challenge", {"pubkey": Signer().pubkey}), 404, "not_found")
    assert_problem(api.get("/api/agents/challenge", {"pubkey": "abc"}), 400, "validation_error")
    assert_problem(api.get("/api/agents/challenge"), 400, "validation_error")
    assert Challenge.objects.count() == 0


def _verify(api, pubkey, challenge, signature):
    return api.post(
        "/api/agents/verify",
        {"pubkey": pubkey, "challenge": challenge, "signature": signature},
        format="json",
    )


def test_verify_with_a_nostr_sdk_signature(api):
    signer = Signer()
    register(api, signer)
    challenge = challenge_for(api, signer)
    response = _verify(api, signer.pubkey, challenge, signer.sign(bytes.fromhex(challenge)))
    assert response.status_code == 200
    body = response.json()
    assert body["pubkey"] == signer.pubkey
    assert body["isVerified"] is True and body["verifiedAt"]
    assert body["message"]
    agent = api.get(f"/api/agents/{signer.pubkey}").json()
    assert agent["isVerified"] is True and agent["verifiedAt"] == body["verifiedAt"]


def test_verify_with_the_key_of_an_official_vector(api):
    signer = Signer(BIP340_VECTORS[2][1].lower())  # secret of vector 2
    register(api, signer)
    assert verify(api, signer)["isVerified"] is True


def test_a_challenge_cannot_be_replayed(api):
    signer = Signer()
    register(api, signer)
    challenge = challenge_for(api, signer)
    signature = signer.sign(bytes.fromhex(challenge))
    assert _verify(api, signer.pubkey, challenge, signature).status_code == 200
    assert_problem(_verify(api, signer.pubkey, challenge, signature), 409, "challenge_spent")


def test_a_signature_by_another_key_fails_and_spends_the_challenge(api):
    signer, other = Signer(), Signer()
    register(api, signer)
    challenge = challenge_for(api, signer)
    forged = _verify(api, signer.pubkey, challenge, other.sign(bytes.fromhex(challenge)))
    assert_problem(forged, 400, "invalid_signature")
    genuine = _verify(api, signer.pubkey, challenge, signer.sign(bytes.fromhex(challenge)))
    assert_problem(genuine, 409, "challenge_spent")
    assert Agent.objects.get(pubkey=signer.pubkey).is_verified is False


def test_a_signature_of_another_message_fails(api):
    signer = Signer()
    register(api, signer)
    challenge = challenge_for(api, signer)
    response = _verify(api, signer.pubkey, challenge, signer.sign(bytes(32)))
    assert_problem(response, 400, "invalid_signature")


def test_a_challenge_issued_for_another_key_is_the_wrong_key(api):
    alice, mallory = Signer(), Signer()
    register(api, alice)
    register(api, mallory)
    challenge = challenge_for(api, alice)
    response = _verify(api, mallory.pubkey, challenge, mallory.sign(bytes.fromhex(challenge)))
    assert_problem(response, 403, "wrong_key")
    assert not Agent.objects.filter(is_verified=True).exists()
    # ...and that attempt spent it.
    retry = _verify(api, alice.pubkey, challenge, alice.sign(bytes.fromhex(challenge)))
    assert_problem(retry, 409, "challenge_spent")


def test_an_expired_challenge_is_refused(api):
    signer = Signer()
    register(api, signer)
    challenge = challenge_for(api, signer)
    Challenge.objects.filter(challenge=challenge).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = _verify(api, signer.pubkey, challenge, signer.sign(bytes.fromhex(challenge)))
    assert_problem(response, 410, "challenge_expired")
    assert Agent.objects.get(pubkey=signer.pubkey).is_verified is False


def test_an_unknown_challenge_is_refused(api):
    signer = Signer()
    register(api, signer)
    challenge = "ab" * 32
    response = _verify(api, signer.pubkey, challenge, signer.sign(bytes.fromhex(challenge)))
    assert_problem(response, 404, "unknown_challenge")


@pytest.mark.parametrize(
    "field,value",
    [
        ("signature", "ab" * 63),  # 126 characters
        ("signature", "ab" * 65),  # 130 characters
        ("signature", "zz" * 64),  # 128 characters, not hex
        ("pubkey", "xy" * 32),
        ("pubkey", "ab" * 31),
    ],
)
def test_malformed_hex_is_named_and_spends_the_challenge(api, field, value):
    signer = Signer()
    register(api, signer)
    challenge = challenge_for(api, signer)
    good = {
        "pubkey": signer.pubkey,
        "challenge": challenge,
        "signature": signer.sign(bytes.fromhex(challenge)),
    }
    response = api.post("/api/agents/verify", {**good, field: value}, format="json")
    assert_problem(response, 400, "malformed_hex")
    assert_problem(api.post("/api/agents/verify", good, format="json"), 409, "challenge_spent")


@pytest.mark.parametrize("challenge", ["zz" * 32, "ab" * 31, "ab" * 33])
def test_malformed_challenge_hex(api, challenge):
    signer = Signer()
    register(api, signer)
    response = _verify(api, signer.pubkey, challenge, "ab" * 64)
    assert_problem(response, 400, "malformed_hex")


def test_verify_requires_all_fields(api):
    assert_problem(
        api.post("/api/agents/verify", {"pubkey": "ab" * 32}, format="json"),
        400,
        "validation_error",
    )


@pytest.mark.django_db(transaction=True)
def test_a_challenge_is_single_use_under_concurrency(api):
    signer = Signer()
    register(api, signer)
    challenge = challenge_for(api, signer)
    signature = signer.sign(bytes.fromhex(challenge))
    barrier = threading.Barrier(6)
    outcomes = []

    def attempt():
        try:
            barrier.wait()
            services.verify_agent(signer.pubkey, challenge, signature)
            outcomes.append("verified")
        except Problem as problem:
            outcomes.append(problem.error)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["challenge_spent"] * 5 + ["verified"]


def test_list_filters_by_verified_and_searches_names(api):
    verified, pending = Signer(), Signer()
    register(api, verified, name="Translator Bot")
    register(api, pending, name="Weather Oracle")
    verify(api, verified)
    everything = api.get("/api/agents").json()
    assert everything["total"] == 2 and len(everything["agents"]) == 2
    only_verified = api.get("/api/agents", {"verified": "true"}).json()
    assert [a["pubkey"] for a in only_verified["agents"]] == [verified.pubkey]
    only_pending = api.get("/api/agents", {"verified": "false"}).json()
    assert [a["pubkey"] for a in only_pending["agents"]] == [pending.pubkey]
    found = api.get("/api/agents", {"q": "weather"}).json()
    assert found["total"] == 1 and found["agents"][0]["name"] == "Weather Oracle"
    page = api.get("/api/agents", {"limit": 1, "offset": 1}).json()
    assert page["total"] == 2 and len(page["agents"]) == 1
    assert_problem(api.get("/api/agents", {"limit": 101}), 400, "validation_error")
    assert_problem(api.get("/api/agents", {"verified": "maybe"}), 400, "validation_error")


def test_get_unknown_agent_is_404(api):
    assert_problem(api.get(f"/api/agents/{Signer().pubkey}"), 404, "not_found")
    assert_problem(api.get("/api/agents/not-a-key"), 404, "not_found")
    assert_problem(api.get(f"/api/agents/{Signer().pubkey}/stats"), 404, "not_found")


def test_register_is_rate_limited_per_client_address(api, settings):
    settings.AGENTS_REGISTER_RATE_LIMIT = 2
    for _ in range(2):
        register(api, Signer())
    limited = api.post("/api/agents/register", {"pubkey": Signer().pubkey}, format="json")
    assert_problem(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1
    assert Agent.objects.count() == 2
    elsewhere = api.post(
        "/api/agents/register",
        {"pubkey": Signer().pubkey},
        format="json",
        REMOTE_ADDR="203.0.113.9",
    )
    assert elsewhere.status_code == 201


def test_challenge_and_verify_are_rate_limited(api, settings):
    signer = Signer()
    register(api, signer)
    settings.AGENTS_CHALLENGE_RATE_LIMIT = 3
    settings.AGENTS_VERIFY_RATE_LIMIT = 2
    challenges = [challenge_for(api, signer) for _ in range(3)]
    limited = api.get("/api/agents/challenge", {"pubkey": signer.pubkey})
    assert_problem(limited, 429, "rate_limited")
    assert limited["Retry-After"]
    for challenge in challenges[:2]:
        assert_problem(_verify(api, signer.pubkey, challenge, "ab" * 64), 400, "invalid_signature")
    last = challenges[2]
    limited = _verify(api, signer.pubkey, last, signer.sign(bytes.fromhex(last)))
    assert_problem(limited, 429, "rate_limited")
    assert limited["Retry-After"]
    # A refused call does not spend the challenge.
    assert Challenge.objects.get(challenge=last).spent_at is None
