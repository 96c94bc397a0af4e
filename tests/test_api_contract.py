"""The API does what its OpenAPI document says: schemathesis fuzzes every operation of
/openapi.json on a live gunicorn (pointed at the test database) as an admin of a seeded
merchant, one test per operation (its examples, coverage and fuzzing phases), then
workflows across operations (the stateful phase, following the links it infers). Any
failure fails the test, with schemathesis's report of each: the check, the request as curl,
the answer.

Every check runs: server errors, status codes, content types, response schemas and
headers, schema-violating requests refused and schema-valid ones accepted, a missing
required header, undeclared methods (405 with Allow), authentication that is declared but
not enforced, use after free and resource availability (stateful). Where the run departs
from schemathesis's defaults, the reason is written next to it:
- positive_data_acceptance runs as positive_data_acceptance_within_limits (below): whether
  an amount can be invoiced depends on the exchange rate and the operator's limit;
- it also counts 402 as acceptance for the L402-paid operations, and 422 for a reused
  Idempotency-Key (PAID_OPERATIONS, CONFIG);
- object_level_authorization runs but has nothing to compare: it needs the identities of
  two merchants given to schemathesis as peers (its WFC auth), and this run acts as one.
  That another merchant's object is a 404 is tested by each app's tests (other_shop in
  test_checkout_api, test_webhooks_api, test_agents_ownership...).

Bounded so that it stays well under a few minutes on two busy cores: a few examples per
operation (MAX_EXAMPLES), few and short workflows (WORKFLOWS, STATEFUL_STEPS), and a fixed
seed with derandomized generation and no cache of earlier runs, so that a run is
reproducible and cannot flake (the same requests every time).

The document is generated in this process at collection time (schemathesis makes one test
per operation when the module is collected, before any fixture could start a server; its
fixture-based loader does not work with pytest 9); the fixture checks that the live server
serves exactly that document at /openapi.json.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import coincurve
import httpx
import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from checkout.models import ApiKey
from checkout.services import hash_key, seed_demo

from .processes import ROOT, child_env, wait_for

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

# schemathesis's max-examples per operation: a few, every check runs on each (the coverage
# phase's cases come on top). The per-operation tests are most of the module's time.
MAX_EXAMPLES = 4
# The stateful phase: how many workflows, of how many calls. It takes seconds, so it keeps
# its own budget: its derandomized workflows depend on these, and a smaller budget makes
# other ones, not merely fewer.
WORKFLOWS = 10
STATEFUL_STEPS = 5
SEED = 20261130
# The seeded merchant's admin key, made with this value so that schemathesis knows it as the
# document's `ApiKey` scheme (it leaves it out where it tests what a missing key gets).
ADMIN_KEY = "zg_admin_contract-test-key-of-the-demo-merchant"
# The public endpoints are rate-limited per client address, and every request of the run
# comes from 127.0.0.1: limits this high keep them from answering 429 to all but the first
# few requests (429 is documented where a limit applies, and tested by the rate-limit tests).
GENEROUS_RATE_LIMITS = {
    name: "1000000"
    for name in (
        "CHECKOUT_PUBLIC_RATE_PER_MINUTE",
        "AGENTS_REGISTER_RATE_LIMIT",
        "AGENTS_CHALLENGE_RATE_LIMIT",
        "AGENTS_VERIFY_RATE_LIMIT",
        "SHOPIFY_CHECKOUT_RATE_PER_MINUTE",
        "SHOPIFY_CLAIM_RATE_PER_MINUTE",
    )
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def openapi_document() -> dict:
    """/openapi.json as the server renders it."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


@pytest.fixture(scope="module")
def live_api(django_db_setup, tmp_path_factory):
    """gunicorn as `make run` starts it, on a free loopback port, on the test database;
    yields its base URL. One server for the tests of every operation."""
    tmp_path = tmp_path_factory.mktemp("contract")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(
        tmp_path,
        PUBLIC_BASE_URL=base,
        ZAPGATE_DEV_MODE="true",
        # The fuzzer's URLs point at this machine (see `uri` below): allowed, as in `make run`.
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        L402_PROXY_ALLOW_PRIVATE_TARGETS="true",
        # What the fuzzer queues (webhook tests, syncs) stays in a broker of its own, never
        # reaching the workers of other tests on a shared Redis.
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        **GENEROUS_RATE_LIMITS,
    )
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--limit-request-line",  # as scripts/run.py
                "8190",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def served_document():
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
        try:
            response = httpx.get(f"{base}/openapi.json", timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    try:
        served = wait_for(served_document, 60, "gunicorn to serve /openapi.json", interval=0.2)
        assert served == openapi_document(), "the live server serves another document"
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def demo_merchant(transactional_db):
    """The demo merchant with ADMIN_KEY, committed for the server to see (each operation's
    test starts from a fresh database, as every transactional test does)."""
    merchant, _ = seed_demo()
    ApiKey.objects.create(
        merchant=merchant,
        name="contract test",
        kind=ApiKey.Kind.ADMIN,
        prefix=ADMIN_KEY[:14],
        key_hash=hash_key(ADMIN_KEY),
    )
    return merchant


# What a valid value of these formats is cannot be checked by a schema: the fuzzer is
# taught to make real ones.
# - A URL the gateway will call (webhooks, proxy upstreams) must resolve, and these tests
#   run without DNS: the URLs point at this machine, which the server allows (see above).
schemathesis.openapi.format(
    "uri",
    st.builds(
        "{}://{}:{}/{}".format,
        st.sampled_from(["http", "https"]),
        st.sampled_from(["127.0.0.1", "localhost"]),
        st.integers(1024, 65535),
        st.from_regex(r"[a-z0-9_/-]{0,20}", fullmatch=True),
    ),
)
# - An agent's key must be a point on secp256k1 (half of all 64-hex strings are not).
schemathesis.openapi.format(
    "secp256k1-x-only",
    st.integers(1, 2**128).map(
        lambda secret: coincurve.PrivateKey.from_int(secret).public_key_xonly.format().hex()
    ),
)

# The L402-paid operations answer a valid request without a paid token with 402 and a
# challenge (documented): that is their acceptance of it. The fuzzer cannot pay.
PAID_OPERATIONS = (
    "^/api/l402/(demo|premium-data|content/{slug}|content/bundle)$"
    "|^/l402/test/ping$"
    "|^/api/shopify/{slug}/checkout$"
    "|^/l402/proxy/{proxy_id}/({path}|api/invoice)$"
)


@schemathesis.check
def positive_data_acceptance_within_limits(ctx, response, case):
    """schemathesis's positive_data_acceptance, but for one refusal no schema can state:
    whether an amount can be invoiced depends on the exchange rate, the operator's largest
    invoice (CHECKOUT_MAX_INVOICE_SATS) and, for a product, its price times the quantity.
    That refusal is a 400 `amount_too_large` (documented); any other refusal of valid data
    fails the test as the built-in check would.
    Likewise whether an invoice can be paid (POST /api/v1/payments with `out: true`) depends
    on its signature, its expiry, who made it and the wallet's balance: the documented
    refusals of those (PAYMENT_REFUSALS) are not refusals of the request's shape; nor are
    those in BEYOND_THE_SCHEMA."""
    if response.status_code == 400 and _problem_slug(response) == "amount_too_large":
        return None
    if (response.status_code, _problem_slug(response)) in PAYMENT_REFUSALS:
        return None
    if response.status_code == 400 and _problem_slug(response) in BEYOND_THE_SCHEMA:
        return None
    return positive_data_acceptance(ctx, response, case)


# Refusals of valid-looking data that no JSON schema can state, each with its own slug:
# whether a string is a Lightning address or LNURL that can be paid (a bech32 checksum, a
# host name); a range whose min is above its max; a whole-sats price for a product whose
# stored currency is SAT, which a PATCH body need not repeat; whether a Nostr Wallet
# Connect URI's keys are on the curve; whether the merchant has a verified agent to act for
# (the demo merchant has none: `no_agent`, which says how to make one).
BEYOND_THE_SCHEMA = {
    "invalid_refund_address",
    "invalid_range",
    "sat_amount_not_whole",
    "invalid_nwc_connection",
    "no_agent",
}

PAYMENT_REFUSALS = {
    (400, "invalid_invoice"),
    (400, "amount_required"),
    (400, "invoice_expired"),
    (400, "own_invoice"),
    (400, "invoice_not_open"),
    (400, "internal_hold_invoice"),
    (402, "insufficient_balance"),
    (520, "payment_failed"),
}


def _problem_slug(response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        # No crash cache between runs: each run makes the same requests.
        "cache": {"enabled": False},
        "auth": {"openapi": {"ApiKey": {"api_key": ADMIN_KEY}}},
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            # Every string the API takes refuses NUL (PostgreSQL cannot store it), as the
            # document's description says once for all; tests/test_bad_input.py proves it.
            "allow-x00": False,
        },
        "checks": {
            # Every check, positive_data_acceptance as positive_data_acceptance_within_limits.
            "positive_data_acceptance": {"enabled": False},
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
        },
        "operations": [
            {
                # The fuzzer reuses an Idempotency-Key with another body: 422, as the IETF
                # Idempotency-Key draft has it (409 while the first is still in flight).
                "include-path-regex": "^/api/checkout/invoices$",
                "include-method": "POST",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422"]
                        + ["429", "5xx"]
                    }
                },
            },
            {
                "include-path-regex": PAID_OPERATIONS,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "3xx", "401", "402", "403", "404", "409"]
                        + ["429", "5xx"]
                    }
                },
            },
        ],
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@schema.parametrize()
@settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_does_what_its_openapi_document_says(case, live_api, demo_merchant):
    case.call_and_validate(
        base_url=live_api, timeout=30, additional_checks=[positive_data_acceptance_within_limits]
    )


def test_workflows_across_operations_do_what_the_document_says(live_api, demo_merchant):
    """The stateful phase: sequences of calls where one answer feeds the next request."""

    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": live_api, "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            super().validate_response(
                response,
                case,
                additional_checks=[positive_data_acceptance_within_limits],
                **kwargs,
            )

    Workflow.run(
        settings=settings(
            max_examples=WORKFLOWS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
