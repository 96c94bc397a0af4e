"""Paths on the paid proxy: every spelling of a priced or blocked path is priced or
blocked, the upstream gets exactly the path that was matched, and patterns cost time
linear in the path (no backtracking), with their size bounded when saved."""

import signal
from contextlib import contextmanager

import pytest
from django.test import Client

from checkout.services import create_merchant
from lightning.models import Invoice

from .l402_support import credential, pay
from .test_l402_proxy import echo, make_proxy

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def shop():
    _, key = create_merchant("Shop")
    return {"HTTP_X_API_KEY": key}


@pytest.fixture
def guarded(client, shop, upstream):
    """A proxy with a priced endpoint (/premium, 500 sats; the default is 21) and blocks."""
    key = shop
    proxy = make_proxy(client, key, upstream.url + "/base", blockedPaths=["/admin", "/internal/*"])
    added = client.post(
        f"/api/proxy/{proxy['proxyId']}/manifest/endpoints",
        {"endpointId": "premium", "path": "/premium", "httpMethod": "GET", "basePriceSats": 500},
        content_type="application/json",
        **key,
    )
    assert added.status_code == 201, added.content
    return f"/l402/proxy/{proxy['proxyId']}"


# The request line as a client sends it (the test client, like a WSGI server, decodes it once).
PREMIUM_SPELLINGS = [
    "/premium/",
    "/premium%2F",
    "//premium",
    "/Premium",
    "/PREMIUM//",
    "/pr%65mium",
]
BLOCKED_SPELLINGS = {
    "/Admin": 403,
    "/ADMIN/": 403,
    "/admin/": 403,
    "/admin%2F": 403,
    "//admin": 403,
    "/adm%69n": 403,
    "/internal": 403,  # a block on /internal/* covers /internal itself
    "/internal/": 403,
    "/Internal/keys": 403,
    "/admin;x": 400,  # path parameters: /admin to servers that strip them
    "/admin%3Bx": 400,
    "/admin%00": 400,  # NUL
    "/admin%0d%0a": 400,
    "/adm%2569n": 400,  # encoded twice: /adm%69n here, /admin upstream
    "/admin%5C": 400,  # backslash
    "/x/../admin": 400,
    "/./admin": 400,
}


def test_every_spelling_of_a_priced_path_costs_its_price(client, guarded, upstream):
    for spelling in PREMIUM_SPELLINGS:
        response = client.get(guarded + spelling)
        assert response.status_code == 402, (spelling, response.content)
        assert response.json()["amountSats"] == 500, spelling

    default = client.get(f"{guarded}/other").json()
    default_token = credential(default, pay(default["invoice"]))
    for spelling in PREMIUM_SPELLINGS:
        refused = client.get(guarded + spelling, HTTP_AUTHORIZATION=default_token)
        assert refused.status_code == 402, spelling
        assert refused.json()["amountSats"] == 500, spelling
        assert "needs its own token" in refused.json()["detail"]
    assert upstream.seen == []


def test_the_upstream_gets_exactly_the_path_that_was_matched(client, guarded, upstream):
    challenge = client.get(f"{guarded}/premium").json()
    token = credential(challenge, pay(challenge["invoice"]))
    for spelling, upstream_path in (
        ("/premium", "/base/premium"),
        ("//Premium/", "/base/Premium"),  # its case kept, slashes normalised
        ("/premium%2F", "/base/premium"),
    ):
        seen = echo(client.get(guarded + spelling, HTTP_AUTHORIZATION=token))
        assert seen["path"] == upstream_path, spelling

    other = client.get(f"{guarded}/a").json()
    token = credential(other, pay(other["invoice"]))
    for spelling, upstream_path in (
        ("/files//report%20one.txt", "/base/files/report%20one.txt"),
        ("/caf%C3%A9", "/base/caf%C3%A9"),
        ("/off/100%25", "/base/off/100%25"),  # a lone %: decoded upstream to exactly "%"
    ):
        seen = echo(client.get(guarded + spelling, HTTP_AUTHORIZATION=token))
        assert seen["path"] == upstream_path, spelling


def test_no_spelling_of_a_blocked_path_gets_through(client, guarded, upstream):
    invoices = Invoice.objects.count()
    for spelling, status in BLOCKED_SPELLINGS.items():
        response = client.get(guarded + spelling)
        assert response.status_code == status, (spelling, response.content)
        assert response["Content-Type"] == "application/problem+json"
        expected = "path_not_allowed" if status == 403 else "invalid_path"
        assert response.json()["error"] == expected, spelling
    assert Invoice.objects.count() == invoices  # refused before any invoice
    assert client.get(f"{guarded}/administrator").status_code == 402  # only what is blocked
    assert client.get(f"{guarded}/internals").status_code == 402
    assert upstream.seen == []


def test_a_paid_token_does_not_open_a_blocked_path(client, guarded, upstream):
    challenge = client.get(f"{guarded}/open").json()
    token = credential(challenge, pay(challenge["invoice"]))
    for spelling, status in BLOCKED_SPELLINGS.items():
        response = client.get(guarded + spelling, HTTP_AUTHORIZATION=token)
        assert response.status_code == status, spelling
    assert upstream.seen == []


def test_a_one_time_key_is_bought_and_used_for_the_normalised_path(client, guarded, upstream):
    proxy_id = guarded.rsplit("/", 1)[-1]
    refused = client.post(
        "/api/invoice",
        {"proxyId": proxy_id, "method": "GET", "path": "/Admin/", "body": ""},
        content_type="application/json",
    )
    assert refused.status_code == 403
    bought = client.post(
        "/api/invoice",
        {"proxyId": proxy_id, "method": "GET", "path": "//Premium/", "body": ""},
        content_type="application/json",
    ).json()
    assert bought["value"] == 500_000  # the endpoint's price, not the default
    pay(bought["paymentRequest"])
    seen = echo(client.get(f"{guarded}/Premium", HTTP_X_API_KEY=bought["apikey"]))
    assert seen["path"] == "/base/Premium"


# --- patterns: linear matching, bounded size ------------------------------------------------------


@contextmanager
def deadline(seconds):
    """Interrupt the block (also a running regex, which checks for signals) after `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_adversarial_patterns_cost_time_linear_in_the_path(client, shop, upstream):
    # With a backtracking regex this pattern against 3,000 "a"s takes on the order of
    # 3000^7 / 7! steps: it would not finish in a lifetime. Linear matching takes a few ms;
    # the deadline is a generous bound that only a backtracking matcher can miss.
    pattern = "/*a*a*a*a*a*a*a*b"
    proxy = make_proxy(client, shop, upstream.url, allowedPaths=["/*"], blockedPaths=[pattern])
    base = f"/l402/proxy/{proxy['proxyId']}"
    with deadline(20):
        long_path = "/" + "a" * 3000
        assert client.get(base + long_path).status_code == 402  # not blocked: no final b
        assert client.get(base + long_path + "b").status_code == 403  # blocked
        assert client.get(base + "/" + "a/" * 1500 + "b").status_code == 403
    assert upstream.seen == []


def test_pattern_size_is_bounded_when_saved(client, shop, upstream):
    key = shop
    for field, patterns in (
        ("blockedPaths", ["/" + "*a" * 9]),  # nine wildcards
        ("allowedPaths", ["/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"]),
        ("blockedPaths", ["/" + "x" * 500]),  # 501 characters
        ("blockedPaths", [f"/p{i}" for i in range(51)]),
        ("blockedPaths", ["/admin;x"]),
        ("blockedPaths", ["/a/../b"]),
        ("allowedPaths", ["/files/%2F"]),
        ("allowedPaths", ["/{unclosed"]),
        ("blockedPaths", ["admin"]),
    ):
        response = client.post(
            "/api/proxy",
            {
                "name": "x",
                "targetBaseUrl": upstream.url,
                "defaultPriceSats": 1,
                field: patterns,
            },
            content_type="application/json",
            **key,
        )
        assert response.status_code == 400, (patterns, response.content)
        assert any(name.startswith(field) for name in response.json()["errors"]), response.json()
    proxy = make_proxy(client, key, upstream.url, blockedPaths=["/Admin/", "//x//*"])
    assert proxy["blockedPaths"] == ["/Admin", "/x/*"]  # stored in normal form
    endpoint = client.post(
        f"/api/proxy/{proxy['proxyId']}/manifest/endpoints",
        {"endpointId": "e", "path": "/" + "*/" * 9, "httpMethod": "GET", "basePriceSats": 2},
        content_type="application/json",
        **key,
    )
    assert endpoint.status_code == 400 and "path" in endpoint.json()["errors"]


def test_endpoints_that_differ_only_in_case_clash(client, shop, upstream):
    key = shop
    proxy = make_proxy(client, key, upstream.url)
    url = f"/api/proxy/{proxy['proxyId']}/manifest/endpoints"
    first = {"endpointId": "a", "path": "/Report", "httpMethod": "GET", "basePriceSats": 2}
    assert client.post(url, first, content_type="application/json", **key).status_code == 201
    clash = client.post(
        url,
        {**first, "endpointId": "b", "path": "/report/"},
        content_type="application/json",
        **key,
    )
    assert clash.status_code == 409, clash.content
    assert client.get(f"/l402/proxy/{proxy['proxyId']}/REPORT").json()["amountSats"] == 2
