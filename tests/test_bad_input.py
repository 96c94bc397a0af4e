"""Bad input on every JSON endpoint is a 4xx problem+json that writes nothing: JSON nested
too deep, NUL characters in strings (PostgreSQL's text and jsonb refuse them), bodies over
the size limit, OPTIONS on every route, unknown paths and methods under /api/ and /l402/.

The endpoints are read from the URL configuration, so a new endpoint is covered as soon as
it is routed. Ids in paths are those of real objects of the merchant whose key is sent, so
the requests reach the code that reads the body."""

import json
import re

import pytest
from django.apps import apps
from django.core.cache import cache
from django.test import Client
from django.urls import URLResolver, get_resolver, resolve, reverse
from drf_spectacular.generators import SchemaGenerator

from checkout.services import create_merchant
from shopify_bridge.models import ShopifyStore

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
DEEP = "[" * 100_000
# Deeper than the limit (64) but well within what json.loads accepts on its own.
NESTED = '{"name": ' + '{"a": ' * 70 + "1" + "}" * 70 + "}"


def _routes():
    """(route name, view class, path parameters) of every DRF view, the admin aside."""

    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if str(pattern.pattern).startswith("admin"):
                    continue
                yield from walk(pattern.url_patterns)
            elif getattr(pattern.callback, "cls", None) is not None:
                converters = getattr(pattern.pattern, "converters", None)
                params = list(converters) if converters else list(pattern.pattern.regex.groupindex)
                yield pattern.name, pattern.callback.cls, params

    return sorted(walk(get_resolver().url_patterns), key=lambda r: r[0])


def _json_operations():
    """(route name, method) of every operation documented with a JSON request body. The
    paid proxy is not one: it forwards whatever body it is sent, unread (on a GraphQL
    proxy's api/invoice, every method but POST)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            if "application/json" not in content:
                continue
            name = resolve(re.sub(r"\{\w+\}", "x", path)).url_name
            forwarded = name == "l402-proxy-request" or (
                name == "l402-proxy-graphql-invoice" and method != "post"
            )
            if not forwarded:
                found.append((name, method))
    return sorted(found)


ROUTES = _routes()
PAID_PROXY_ROUTES = {
    "l402-proxy-request",
    "l402-proxy-manifest",
    "l402-proxy-openapi",
    "l402-proxy-graphql-invoice",
}
JSON_WRITES = _json_operations()
ALL_WRITES = [
    (name, method)
    for name, cls, _ in ROUTES
    for method in ("post", "put", "patch", "delete")
    if hasattr(cls, method)
]


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = True
    cache.clear()  # rate limits
    yield
    cache.clear()


@pytest.fixture
def world():
    """A merchant with an admin key and one object of each kind the paths name."""
    merchant, key = create_merchant("Bad Input Roasters")
    api = Client(headers={"X-Api-Key": key})

    def post(url, body):
        response = api.post(url, body, content_type="application/json")
        assert response.status_code == 201, (url, response.content)
        return response.json()

    product = post("/api/checkout/products", {"name": "Beans", "price": "100", "currency": "SAT"})
    invoice = post("/api/checkout/invoices", {"amount": "100", "currency": "SAT"})
    endpoint = post("/api/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    delivery = api.post(f"/api/webhooks/{endpoint['id']}/test").json()
    proxy = post(
        "/api/proxy",
        # GraphQL: its api/invoice reads the body (a GraphQL request) before selling a key.
        {
            "name": "Weather",
            "targetBaseUrl": "http://127.0.0.1:9/",
            "defaultPriceSats": 5,
            "graphql": True,
        },
    )
    post(
        f"/api/proxy/{proxy['proxyId']}/manifest/endpoints",
        {"endpointId": "forecast", "httpMethod": "GET", "path": "/forecast", "basePriceSats": 7},
    )
    content = post(
        "/api/l402/content", {"slug": "report", "title": "Report", "body": "b", "priceSats": 3}
    )
    ShopifyStore.objects.create(
        merchant=merchant,
        slug="zap-apparel",
        name="Zap Apparel",
        shop_domain="zap-apparel.myshopify.com",
        access_token="shpat_x",
        webhook_secret="shpss_x",
    )
    values = {
        "productId": product["productId"],
        "invoiceId": invoice["invoiceId"],
        "endpoint_id": endpoint["id"],
        "delivery_id": delivery["id"],
        "proxy_id": proxy["proxyId"],
        "slug": "zap-apparel",
        "path": "forecast",
        "pubkey": "ab" * 32,
    }
    route_values = {
        ("l402-proxy-endpoint", "endpoint_id"): "forecast",
        ("l402-content-item", "slug"): content["slug"],
    }
    return key, values, route_values


def _url(world, name):
    _, values, route_values = world
    params = next(p for n, _, p in ROUTES if n == name)
    return reverse(
        name, kwargs={p: route_values.get((name, p), values.get(p, "x")) for p in params}
    )


def _rows():
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def _assert_refused(response, statuses=None):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if statuses:
        assert response.status_code in statuses, response.content[:300]
    assert response["Content-Type"] == PROBLEM, (response.status_code, response.content[:300])
    body = json.loads(response.content)
    assert body["status"] == response.status_code and body["error"] and body["detail"]
    return body


def _send(world, name, method, body, with_key, **extra):
    headers = {"X-Api-Key": world[0]} if with_key else {}
    return Client(headers=headers).generic(
        method.upper(), _url(world, name), body, content_type="application/json", **extra
    )


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "admin key"])
@pytest.mark.parametrize("name,method", JSON_WRITES)
def test_json_nested_too_deep_is_a_400(world, name, method, with_key):
    before = _rows()
    for body in (DEEP, NESTED):
        _assert_refused(_send(world, name, method, body, with_key))
    assert _rows() == before


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "admin key"])
@pytest.mark.parametrize("name,method", JSON_WRITES)
def test_nul_in_a_json_string_is_a_400(world, name, method, with_key):
    before = _rows()
    for body in ({"name": "bad\u0000name"}, {"metadata": {"note\u0000": "x"}}):
        _assert_refused(_send(world, name, method, json.dumps(body), with_key))
    assert _rows() == before


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "admin key"])
@pytest.mark.parametrize("name,method", ALL_WRITES)
def test_a_body_over_the_limit_is_a_413(world, name, method, with_key, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = _rows()
    body = json.dumps({"name": "x" * 2000})
    _assert_refused(_send(world, name, method, body, with_key), statuses={413})
    assert _rows() == before


def test_nul_is_refused_naming_the_field_before_the_database(world):
    """On PostgreSQL this was a 500 (text and jsonb cannot hold NUL); on SQLite it was
    stored."""
    before = _rows()
    response = _send(
        world,
        "checkout-products",
        "post",
        json.dumps({"name": "Beans\u0000", "price": "100", "currency": "SAT"}),
        with_key=True,
    )
    body = _assert_refused(response, statuses={400})
    assert body["error"] == "validation_error"
    assert "name" in body["errors"] and "NUL" in body["detail"]
    response = _send(
        world,
        "checkout-invoices",
        "post",
        json.dumps({"amount": "1", "currency": "SAT", "metadata": {"items": [{"sku": "a\x00"}]}}),
        with_key=True,
    )
    body = _assert_refused(response, statuses={400})
    assert "metadata.items[0].sku" in body["errors"]
    assert _rows() == before


def test_deep_json_says_what_is_wrong(world):
    response = _send(world, "agents-register", "post", DEEP, with_key=False)
    body = _assert_refused(response, statuses={400})
    assert body["error"] == "validation_error" and "64" in body["detail"]
    response = _send(world, "l402-validate", "post", NESTED, with_key=False)
    body = _assert_refused(response, statuses={400})
    assert "nested deeper than 64" in body["detail"]


def test_a_20_mb_body_is_a_problem_413(world):
    body = json.dumps({"name": "x" * (20 * 1024 * 1024)})
    before = _rows()
    for name, with_key in (
        ("agents-register", False),
        ("checkout-products", True),
        ("l402-validate", False),
    ):
        response = _send(world, name, "post", body, with_key)
        problem = _assert_refused(response, statuses={413})
        assert problem["error"] == "request_too_large"
    assert _rows() == before


def test_nothing_is_refused_that_is_fine(world):
    """The parser still takes ordinary nesting and text."""
    body = {"amount": "1", "currency": "SAT", "metadata": {"a": [{"b": [[1, 2], "é\u2028"]}]}}
    response = _send(world, "checkout-invoices", "post", json.dumps(body), with_key=True)
    assert response.status_code == 201, response.content
    assert response.json()["metadata"] == body["metadata"]


def test_a_shopify_webhook_nested_too_deep_is_a_400(world):
    import base64
    import hashlib
    import hmac

    body = DEEP.encode()
    signature = base64.b64encode(hmac.new(b"shpss_x", body, hashlib.sha256).digest()).decode()
    response = Client().post(
        "/api/shopify/zap-apparel/webhooks",
        body,
        content_type="application/json",
        headers={"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Topic": "orders/fulfilled"},
    )
    _assert_refused(response, statuses={400})


def test_a_nip98_event_nested_too_deep_is_a_401(world):
    import base64

    token = base64.b64encode(b"[" * 6000).decode()
    response = Client().get("/api/agents/requests", headers={"Authorization": f"Nostr {token}"})
    _assert_refused(response, statuses={401})


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "admin key"])
@pytest.mark.parametrize("name", [name for name, _, _ in ROUTES])
def test_options_never_fails(world, name, with_key):
    headers = {"X-Api-Key": world[0]} if with_key else {}
    url = _url(world, name)
    response = Client(headers=headers).options(url)
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400 and url.startswith(("/api/", "/l402/")):
        _assert_refused(response)


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "admin key"])
@pytest.mark.parametrize(
    "name", [name for name, _, params in ROUTES if params and name not in PAID_PROXY_ROUTES]
)
def test_nul_in_an_id_of_the_path_is_a_400(world, name, with_key):
    """PostgreSQL cannot compare with a NUL: looking such an id up was a 500. (The paid
    proxy's own paths, under /l402/proxy/, are normalised by the proxy.)"""
    _, values, route_values = world
    first = next(p for n, _, p in ROUTES if n == name)[0]
    value = route_values.get((name, first), values.get(first, "x"))
    url = _url(world, name).replace(f"/{value}", f"/{value}%00", 1)
    headers = {"X-Api-Key": world[0]} if with_key else {}
    before = _rows()
    for method in ("get", "post"):
        response = Client(headers=headers).generic(method.upper(), url)
        if url.startswith("/api/"):
            _assert_refused(response, statuses={400})
        else:
            assert response.status_code == 400
    response = Client(headers=headers).get(_url(world, name), {"q": "a\x00", "claimToken": "\x00"})
    assert response.status_code == 400
    assert _rows() == before


@pytest.mark.parametrize(
    "path", ["/api/nope", "/api/checkout/nope/deeper", "/api/", "/l402/nope", "/l402/proxy/"]
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_paths_are_a_problem_404(path, method):
    response = Client().generic(method.upper(), path)
    body = _assert_refused(response, statuses={404})
    assert body["error"] == "not_found"


def test_unknown_pages_keep_the_html_404():
    response = Client().get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "method,path",
    [
        ("delete", "/api/webhooks/default-secret"),
        ("put", "/api/agents/register"),
        ("post", "/api/l402/demo"),
    ],
)
def test_a_method_not_allowed_on_an_api_path_is_a_problem_405(world, method, path):
    response = Client(headers={"X-Api-Key": world[0]}).generic(method.upper(), path)
    body = _assert_refused(response, statuses={405})
    assert body["error"] == "method_not_allowed" and response["Allow"]


def test_an_unexpected_error_on_an_api_path_is_a_problem_500(monkeypatch):
    from l402.services import mcp

    def broken(current):
        raise RuntimeError("a bug")

    monkeypatch.setattr(mcp, "mcp_version_check", broken)
    response = Client(raise_request_exception=False).get("/api/mcp/version-check")
    assert response.status_code == 500 and response["Content-Type"] == PROBLEM
    assert response.json()["error"] == "server_error" and "a bug" not in response.json()["detail"]
