"""The paid reverse proxy against a real upstream HTTP server on loopback: the merchant
API, forwarding (methods, query, body, headers, streaming), failures (timeout, 5xx,
unreachable), SSRF, endpoint pricing, manifests, and one-time request keys."""

import json
import socket
import threading

import bolt11
import pytest
from django.db import connection
from django.test import Client

from checkout.models import ApiKey
from checkout.services import create_merchant, issue_api_key
from l402.models import OneTimeKey, Proxy
from l402.services import proxies
from lightning import services as lightning
from lightning.backends import get_backend
from lightning.models import Invoice
from webhooks.models import WebhookEvent
from webhooks.services import create_endpoint

from .l402_support import credential, pay

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("private_targets_allowed"),
]


@pytest.fixture
def private_targets_allowed(settings):
    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def shop():
    merchant, key = create_merchant("Shop")
    return merchant, {"HTTP_X_API_KEY": key}


def make_proxy(client, key, target, **fields):
    payload = {
        "name": "Weather API",
        "targetBaseUrl": target,
        "defaultPriceSats": 21,
        "description": "Forecasts",
        "authHeader": "X-Upstream-Key",
        "authValue": "upstream-secret",
        **fields,
    }
    response = client.post("/api/proxy", payload, content_type="application/json", **key)
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def proxy(client, shop, upstream):
    return make_proxy(client, shop[1], upstream.url + "/base")


def paid_token(client, url, method="get", **extra):
    response = getattr(client, method)(url, **extra)
    assert response.status_code == 402, response.content
    body = response.json()
    return credential(body, pay(body["invoice"])), body


def content(response) -> bytes:
    return b"".join(response.streaming_content)


def echo(response) -> dict:
    assert response.status_code == 200, content(response) if response.streaming else response
    return json.loads(content(response))


# --- the merchant API ----------------------------------------------------------------------------


def test_a_proxy_is_created_read_updated_and_deleted(client, shop, upstream, proxy):
    _, key = shop
    assert proxy["proxyId"].startswith("weather-api-") and len(proxy["proxyId"]) == 18
    assert "authValue" not in proxy and proxy["hasAuthValue"] is True
    assert proxy["proxyUrl"].endswith(f"/l402/proxy/{proxy['proxyId']}")
    url = f"/api/proxy/{proxy['proxyId']}"
    assert client.get(url, **key).json()["name"] == "Weather API"
    assert client.get("/api/proxy", **key).json()["total"] == 1
    changed = client.put(
        url, {"defaultPriceSats": 5, "timeout": 3}, content_type="application/json", **key
    )
    assert changed.status_code == 200
    assert changed.json()["defaultPriceSats"] == 5 and changed.json()["timeout"] == 3
    assert changed.json()["hasAuthValue"] is True  # kept when not sent
    assert client.delete(url, **key).status_code == 204
    assert client.get(url, **key).status_code == 404


def test_an_edit_does_not_undo_what_another_request_changed_meanwhile(client, shop, proxy):
    _, key = shop
    url = f"/api/proxy/{proxy['proxyId']}"
    # Each request loaded the proxy before the other one wrote.
    editing, retiring = (Proxy.objects.get(proxy_id=proxy["proxyId"]) for _ in range(2))
    proxies.unpublish_proxy(retiring, "moved")
    proxies.update_proxy(editing, name="Renamed", auth_value="rotated")
    fresh = client.get(url, **key).json()
    assert fresh["name"] == "Renamed" and fresh["hasAuthValue"] is True
    assert fresh["retired"] is True and fresh["isActive"] is False  # not undone
    assert fresh["retiredReason"] == "moved"

    pricing, timing = (Proxy.objects.get(proxy_id=proxy["proxyId"]) for _ in range(2))
    proxies.update_proxy(pricing, default_price_sats=5)
    proxies.update_manifest_settings(timing, service_description="Forecasts by city")
    proxies.update_proxy(timing, timeout_seconds=3)
    fresh = client.get(url, **key).json()
    assert fresh["defaultPriceSats"] == 5 and fresh["timeout"] == 3
    assert fresh["serviceDescription"] == "Forecasts by city"
    assert fresh["name"] == "Renamed"


def test_another_merchant_sees_none_of_it(client, proxy):
    merchant, other = create_merchant("Other")
    headers = {"HTTP_X_API_KEY": other}
    url = f"/api/proxy/{proxy['proxyId']}"
    assert client.get(url, **headers).status_code == 404
    assert client.put(url, {}, content_type="application/json", **headers).status_code == 404
    assert client.delete(url, **headers).status_code == 404
    assert client.get("/api/proxy", **headers).json()["total"] == 0
    _, invoice_key = issue_api_key(merchant, ApiKey.Kind.INVOICE, "ro")
    refused = client.post(
        "/api/proxy",
        {"name": "x", "targetBaseUrl": "http://127.0.0.1:1", "defaultPriceSats": 1},
        content_type="application/json",
        HTTP_X_API_KEY=invoice_key,
    )
    assert refused.status_code == 403


def test_proxy_input_is_checked(client, shop):
    _, key = shop
    for payload, field in (
        (
            {"name": "x", "targetBaseUrl": "ftp://example.com", "defaultPriceSats": 1},
            "targetBaseUrl",
        ),
        (
            {"name": "x", "targetBaseUrl": "http://127.0.0.1:9", "defaultPriceSats": 0},
            "defaultPriceSats",
        ),
        (
            {
                "name": "x",
                "targetBaseUrl": "http://127.0.0.1:9",
                "defaultPriceSats": 1,
                "timeout": 999,
            },
            "timeout",
        ),
        (
            {
                "name": "x",
                "targetBaseUrl": "http://127.0.0.1:9",
                "defaultPriceSats": 1,
                "allowedMethods": ["BREW"],
            },
            "allowedMethods",
        ),
        (
            {
                "name": "x",
                "targetBaseUrl": "http://127.0.0.1:9",
                "defaultPriceSats": 1,
                "authHeader": "Host",
            },
            "authHeader",
        ),
    ):
        response = client.post("/api/proxy", payload, content_type="application/json", **key)
        assert response.status_code == 400, (payload, response.content)
        assert any(name.startswith(field) for name in response.json()["errors"]), response.json()


def test_private_targets_are_refused_at_save_and_at_request_time(client, shop, upstream, settings):
    _, key = shop
    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = False
    response = client.post(
        "/api/proxy",
        {"name": "x", "targetBaseUrl": upstream.url, "defaultPriceSats": 1},
        content_type="application/json",
        **key,
    )
    assert response.status_code == 400
    assert "refused" in response.json()["errors"]["targetBaseUrl"][0]

    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = True
    proxy = make_proxy(client, key, upstream.url)
    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = False
    invoices = Invoice.objects.count()
    refused = client.get(f"/l402/proxy/{proxy['proxyId']}/anything")
    assert refused.status_code == 502 and refused.json()["error"] == "upstream_refused"
    assert Invoice.objects.count() == invoices  # refused before any invoice
    assert upstream.seen == []


# --- forwarding ----------------------------------------------------------------------------------


def test_a_paid_request_is_forwarded_with_query_body_and_safe_headers(client, proxy, upstream):
    base = f"/l402/proxy/{proxy['proxyId']}"
    token, challenge = paid_token(client, f"{base}/forecast?city=Paris")
    assert challenge["amountSats"] == 21
    invoices = Invoice.objects.count()
    seen = echo(
        client.get(
            f"{base}/forecast?city=Paris&days=3",
            HTTP_AUTHORIZATION=token,
            HTTP_X_CUSTOM="kept",
            HTTP_COOKIE="sessionid=ours",
        )
    )
    assert seen["method"] == "GET" and seen["path"] == "/base/forecast?city=Paris&days=3"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-upstream-key"] == "upstream-secret"  # injected
    assert headers["x-custom"] == "kept"
    assert "authorization" not in headers and "cookie" not in headers  # ours stay here
    assert headers["host"] == upstream.url.removeprefix("http://")

    for method in ("post", "put", "patch", "delete"):
        response = getattr(client, method)(
            f"{base}/items/7",
            data=b'{"n": 1}',
            content_type="application/json",
            HTTP_AUTHORIZATION=token,
        )
        seen = echo(response)
        assert seen["method"] == method.upper() and seen["path"] == "/base/items/7"
        assert seen["body"] == '{"n": 1}'
        assert seen["headers"]["Content-Type"] == "application/json"
    head = client.head(f"{base}/items/7", HTTP_AUTHORIZATION=token)
    assert head.status_code == 200 and content(head) == b""
    options = client.options(f"{base}/items/7", HTTP_AUTHORIZATION=token)
    assert options.status_code == 200
    assert Invoice.objects.count() == invoices  # one payment, many requests


def test_a_client_cannot_send_its_own_value_of_the_injected_header(client, shop, upstream):
    _, key = shop
    proxy = make_proxy(client, key, upstream.url, authHeader="x-upstream-KEY")
    base = f"/l402/proxy/{proxy['proxyId']}"
    token, _ = paid_token(client, f"{base}/data")
    # The client's header, in another case (and as X_Upstream_Key, which WSGI reads alike).
    echo(client.get(f"{base}/data", HTTP_AUTHORIZATION=token, HTTP_X_UPSTREAM_KEY="forged"))
    sent = [(n, v) for n, v in upstream.seen[-1].header_list if n.lower() == "x-upstream-key"]
    assert sent == [("x-upstream-KEY", "upstream-secret")]

    bare = make_proxy(client, key, upstream.url, authHeader="X-Upstream-Key", authValue="")
    assert bare["hasAuthValue"] is False
    base = f"/l402/proxy/{bare['proxyId']}"
    token, _ = paid_token(client, f"{base}/data")
    echo(client.get(f"{base}/data", HTTP_AUTHORIZATION=token, HTTP_X_UPSTREAM_KEY="forged"))
    assert not [n for n, _ in upstream.seen[-1].header_list if n.lower() == "x-upstream-key"]


def test_the_answer_comes_back_as_the_upstream_sent_it(client, proxy, upstream):
    base = f"/l402/proxy/{proxy['proxyId']}"
    token, _ = paid_token(client, f"{base}/echo")
    response = client.get(f"{base}/echo", HTTP_AUTHORIZATION=token)
    assert response["X-Upstream"] == "yes"
    assert response["Content-Type"] == "application/json"
    assert "Set-Cookie" not in response  # upstream cookies are not set on our domain
    failing = client.get(f"{base}/fail", HTTP_AUTHORIZATION=token)
    assert failing.status_code == 503
    assert failing["Retry-After"] == "7"
    assert content(failing) == b'{"error":"upstream down"}'


def test_a_chunked_answer_is_streamed_as_it_arrives(client, proxy, upstream):
    base = f"/l402/proxy/{proxy['proxyId']}"
    token, _ = paid_token(client, f"{base}/stream")
    response = client.get(f"{base}/stream", HTTP_AUTHORIZATION=token)
    assert response.status_code == 200 and response.streaming
    chunks = iter(response.streaming_content)
    # The first part is here while the upstream still holds back the rest.
    assert next(chunks) == b"first\n"
    assert not upstream.proceed.is_set()
    upstream.proceed.set()
    assert b"".join(chunks) == b"second\nthird\n"


def test_an_upstream_timeout_is_a_504(client, shop, upstream):
    proxy = make_proxy(client, shop[1], upstream.url, timeout=1)
    base = f"/l402/proxy/{proxy['proxyId']}"
    token, _ = paid_token(client, f"{base}/slow")
    response = client.get(f"{base}/slow", HTTP_AUTHORIZATION=token)
    assert response.status_code == 504
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["error"] == "upstream_timeout"


def test_an_unreachable_upstream_is_a_502(client, shop):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    proxy = make_proxy(client, shop[1], f"http://127.0.0.1:{port}")
    base = f"/l402/proxy/{proxy['proxyId']}"
    token, _ = paid_token(client, f"{base}/x")
    response = client.get(f"{base}/x", HTTP_AUTHORIZATION=token)
    assert response.status_code == 502
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["error"] == "upstream_unreachable"


def test_disallowed_methods_and_paths_are_refused_before_any_invoice(client, shop, upstream):
    proxy = make_proxy(
        client,
        shop[1],
        upstream.url,
        allowedMethods=["GET", "POST"],
        allowedPaths=["/v1/*"],
        blockedPaths=["/v1/admin/*"],
    )
    base = f"/l402/proxy/{proxy['proxyId']}"
    invoices = Invoice.objects.count()
    deleted = client.delete(f"{base}/v1/items")
    assert deleted.status_code == 405 and deleted["Allow"] == "GET, POST"
    assert client.get(f"{base}/v2/items").status_code == 403
    assert client.get(f"{base}/v1/admin/users").json()["error"] == "path_not_allowed"
    assert client.get(f"{base}/v1/../admin").status_code == 400
    assert Invoice.objects.count() == invoices
    assert client.get(f"{base}/v1/items").status_code == 402
    assert upstream.seen == []


def test_tokens_are_scoped_to_their_proxy_and_priced_endpoint(client, shop, upstream, proxy):
    _, key = shop
    base = f"/l402/proxy/{proxy['proxyId']}"
    added = client.post(
        f"/api/proxy/{proxy['proxyId']}/manifest/endpoints",
        {
            "endpointId": "forecast",
            "path": "/forecast/{city}",
            "httpMethod": "GET",
            "summary": "A city's forecast",
            "basePriceSats": 50,
        },
        content_type="application/json",
        **key,
    )
    assert added.status_code == 201, added.content
    default_token, _ = paid_token(client, f"{base}/other")
    # A token that does not cover the request gets the request's own challenge (clients
    # pay on a 402), with the reason in the body.
    refused = client.get(f"{base}/forecast/paris", HTTP_AUTHORIZATION=default_token)
    assert refused.status_code == 402 and "needs its own token" in refused.json()["detail"]
    assert refused.json()["reason"] == "token_out_of_scope"
    assert refused.json()["amountSats"] == 50

    endpoint_token, challenge = paid_token(client, f"{base}/forecast/paris")
    assert challenge["amountSats"] == 50
    assert echo(client.get(f"{base}/forecast/rome", HTTP_AUTHORIZATION=endpoint_token))
    wrong_route = client.get(f"{base}/other", HTTP_AUTHORIZATION=endpoint_token)
    assert wrong_route.status_code == 402 and "forecast" in wrong_route.json()["detail"]

    other = make_proxy(client, key, upstream.url, name="Other API")
    elsewhere = client.get(f"/l402/proxy/{other['proxyId']}/x", HTTP_AUTHORIZATION=default_token)
    assert elsewhere.status_code == 402
    assert proxy["proxyId"] in elsewhere.json()["detail"]
    assert not [seen for seen in upstream.seen if seen.path.endswith("/x")]


def test_a_retired_proxy_answers_410_and_leaves_the_registry(client, shop, proxy):
    _, key = shop
    url = f"/api/proxy/{proxy['proxyId']}"
    client.put(
        f"{url}/manifest/settings",
        {"manifestPubliclyListed": True},
        content_type="application/json",
        **key,
    )
    assert client.get("/api/manifests/registry").json()["total"] == 1
    first = client.post(f"{url}/unpublish", {"reason": "moved"}, "application/json", **key)
    assert first.json() == {"proxyId": proxy["proxyId"], "retired": True, "alreadyRetired": False}
    again = client.post(f"{url}/unpublish", {}, "application/json", **key)
    assert again.json()["alreadyRetired"] is True
    assert client.get(f"/l402/proxy/{proxy['proxyId']}/x").status_code == 410
    assert client.get("/api/manifests/registry").json()["total"] == 0


# --- manifests -----------------------------------------------------------------------------------


def test_the_manifest_openapi_registry_and_validator(client, shop, upstream, proxy):
    _, key = shop
    pid = proxy["proxyId"]
    client.post(
        f"/api/proxy/{pid}/manifest/endpoints",
        {
            "endpointId": "forecast",
            "path": "/forecast/{city}",
            "httpMethod": "get",
            "summary": "Forecast",
            "basePriceSats": 50,
        },
        content_type="application/json",
        **key,
    )
    settings_response = client.put(
        f"/api/proxy/{pid}/manifest/settings",
        {
            "manifestEnabled": True,
            "manifestPubliclyListed": True,
            "serviceDescription": "Forecasts by city",
            "categories": ["weather", "data"],
        },
        content_type="application/json",
        **key,
    )
    assert settings_response.status_code == 200
    manifest = client.get(f"/l402/proxy/{pid}/.well-known/l402-manifest.json").json()
    assert manifest["version"] == "1.0" and manifest["$schema"]
    assert manifest["service"]["name"] == "Weather API"
    assert manifest["service"]["description"] == "Forecasts by city"
    assert manifest["service"]["base_url"].endswith(f"/l402/proxy/{pid}")
    assert manifest["service"]["categories"] == ["weather", "data"]
    assert manifest["l402"]["default_price_sats"] == 21
    assert manifest["l402"]["payment_flow"] == "402_challenge_response"
    assert manifest["endpoints"] == [
        {
            "id": "forecast",
            "path": "/forecast/{city}",
            "method": "GET",
            "summary": "Forecast",
            "pricing": {"model": "fixed", "base_price_sats": 50},
            "l402_enabled": True,
        }
    ]
    assert client.post("/api/manifests/validate", manifest, "application/json").json() == {
        "valid": True,
        "errors": [],
    }
    broken = {**manifest, "version": "2", "endpoints": [{"id": "", "path": "x", "method": "GET"}]}
    result = client.post("/api/manifests/validate", broken, "application/json").json()
    assert result["valid"] is False
    assert 'version must be "1.0"' in result["errors"]
    assert "endpoints[0].path must be a string starting with /" in result["errors"]
    assert "endpoints[0].pricing must be an object" in result["errors"]
    assert client.post("/api/manifests/validate", [1], "application/json").json()["valid"] is False

    openapi = client.get(f"/l402/proxy/{pid}/openapi.json").json()
    operation = openapi["paths"]["/forecast/{city}"]["get"]
    assert operation["x-l402-price-sats"] == 50 and "402" in operation["responses"]
    assert openapi["servers"][0]["url"].endswith(f"/l402/proxy/{pid}")

    make_proxy(client, key, upstream.url, name="Hidden")  # not publicly listed
    registry = client.get("/api/manifests/registry").json()
    assert registry["total"] == 1 and registry["page"] == 1 and registry["pageSize"] == 20
    item = registry["items"][0]
    assert item["endpointCount"] == 1 and item["defaultPriceSats"] == 21
    assert item["parsedCategories"] == ["weather", "data"]
    assert item["manifestUrl"].endswith(f"/l402/proxy/{pid}/.well-known/l402-manifest.json")
    assert client.get("/api/manifests/registry?category=WEATHER").json()["total"] == 1
    assert client.get("/api/manifests/registry?category=music").json()["total"] == 0
    assert client.get("/api/manifests/registry?q=forecasts").json()["total"] == 1
    assert client.get("/api/manifests/registry?page=2").json()["items"] == []
    assert client.get("/api/manifests/registry?pageSize=0").status_code == 400


# --- one-time keys -------------------------------------------------------------------------------


def buy_key(client, proxy, body='{"q": 1}', path="/search", method="POST"):
    response = client.post(
        "/api/invoice",
        {"proxyId": proxy["proxyId"], "method": method, "path": path, "body": body},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_a_one_time_key_runs_exactly_the_request_it_was_bought_for(client, shop, proxy, upstream):
    bought = buy_key(client, proxy)
    assert bought["apikey"].startswith("otk_")
    assert bought["value"] == 21_000
    assert bought["price"] == 0.021  # 21 sats at 100000 USD/BTC: a number, as in Blocktap
    url = f"/l402/proxy/{proxy['proxyId']}/search"

    def use(body='{"q": 1}', path=url, key=bought["apikey"]):
        return client.post(path, data=body, content_type="application/json", HTTP_X_API_KEY=key)

    unpaid = use()
    assert unpaid.status_code == 402 and "not paid" in unpaid.json()["detail"]
    pay(bought["paymentRequest"])
    different = use(body='{"q": 2}')
    assert different.status_code == 400 and "body differs" in different.json()["detail"]
    elsewhere = use(path=f"/l402/proxy/{proxy['proxyId']}/other")
    assert elsewhere.status_code == 400 and "POST /search" in elsewhere.json()["detail"]
    seen = echo(use())
    assert seen["body"] == '{"q": 1}'
    assert "X-Api-Key" not in seen["headers"] and seen["headers"]["X-Upstream-Key"]
    spent = use()
    assert spent.status_code == 401 and "already used" in spent.json()["detail"]
    assert len(upstream.seen) == 1

    stats = client.get("/api/stats/l402", **shop[1]).json()
    assert stats["oneTimeKeys"] == {"issued": 1, "paid": 1, "spent": 1, "revenueSats": 21}
    assert stats["revenueSats"] == 21
    (row,) = stats["byProxy"]
    assert row["proxyId"] == proxy["proxyId"]
    assert row["oneTimeKeysPaid"] == 1 and row["revenueSats"] == 21


BLOCKTAP_QUERY = {
    "query": "query market($exchangeSymbol: String!) { market(exchangeSymbol: $exchangeSymbol, "
    'baseSymbol: "BTC", quoteSymbol: "USD") { marketSymbol } }',
    "operation": "market",
    "variables": {"exchangeSymbol": "Binance"},
}


def test_a_graphql_proxy_sells_blocktaps_one_time_keys(client, shop, upstream):
    """The seed's flow, byte for byte: POST /api/invoice below the proxy with the GraphQL
    body, pay, POST /graphql with the same body and the key: forwarded once."""
    graph = make_proxy(client, shop[1], upstream.url + "/v1", graphql=True, defaultPriceSats=3)
    assert graph["graphql"] is True
    base = f"/l402/proxy/{graph['proxyId']}"
    body = json.dumps(BLOCKTAP_QUERY)
    invoice = client.post(f"{base}/api/invoice", data=body, content_type="application/json")
    assert invoice.status_code == 200, invoice.content
    sold = invoice.json()
    assert set(sold) == {"price", "value", "paymentRequest", "apikey"}
    assert sold["value"] == 3000 and isinstance(sold["value"], int)
    assert sold["price"] == 0.003 and bolt11.decode(sold["paymentRequest"]).amount_msat == 3000

    def run(data=body, key=sold["apikey"]):
        return client.post(
            f"{base}/graphql", data=data, content_type="application/json", HTTP_X_API_KEY=key
        )

    assert run().status_code == 402  # not paid yet
    pay(sold["paymentRequest"])
    other = json.dumps({**BLOCKTAP_QUERY, "variables": {"exchangeSymbol": "Kraken"}})
    assert run(data=other).json()["error"] == "body_mismatch"
    seen = echo(run())
    assert seen["method"] == "POST" and seen["path"] == "/v1/graphql"
    assert seen["body"] == body
    assert run().json()["error"] == "key_spent"
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", None),
        ("[]", "body"),
        ('{"operation": "market"}', "query"),
        ('{"query": "no selection set"}', "query"),
        ('{"query": "query a { x }", "operation": "b"}', "operation"),
        ('{"query": "{ x }", "variables": [1]}', "variables"),
    ],
)
def test_a_graphql_invoice_needs_a_graphql_request(client, shop, upstream, body, field):
    graph = make_proxy(client, shop[1], upstream.url, graphql=True)
    invoices = Invoice.objects.count()
    response = client.post(
        f"/l402/proxy/{graph['proxyId']}/api/invoice", data=body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    problem = response.json()
    if field is None:
        assert problem["error"] == "malformed_json"
    else:
        assert problem["errors"][field] and field in problem["detail"]
    assert Invoice.objects.count() == invoices


def test_api_invoice_below_any_other_proxy_is_just_a_paid_path(client, proxy, upstream):
    response = client.post(
        f"/l402/proxy/{proxy['proxyId']}/api/invoice",
        data=json.dumps(BLOCKTAP_QUERY),
        content_type="application/json",
    )
    assert response.status_code == 402 and response.json()["amountSats"] == 21
    token = credential(response.json(), pay(response.json()["invoice"]))
    seen = echo(
        client.post(
            f"/l402/proxy/{proxy['proxyId']}/api/invoice",
            data=json.dumps(BLOCKTAP_QUERY),
            content_type="application/json",
            HTTP_AUTHORIZATION=token,
        )
    )
    assert seen["path"] == "/base/api/invoice"


def test_only_one_time_keys_are_taken_on_the_proxy(client, shop, proxy, upstream):
    _, key = shop
    merchant_key = client.get(
        f"/l402/proxy/{proxy['proxyId']}/x", HTTP_X_API_KEY=key["HTTP_X_API_KEY"]
    )
    assert merchant_key.status_code == 401 and "one-time key" in merchant_key.json()["detail"]
    assert (
        client.get(f"/l402/proxy/{proxy['proxyId']}/x", HTTP_X_API_KEY="otk_nope").json()["error"]
        == "unknown_key"
    )
    other = make_proxy(client, key, upstream.url, name="Other")
    bought = buy_key(client, other, body="", path="/x", method="GET")
    pay(bought["paymentRequest"])
    wrong_proxy = client.get(f"/l402/proxy/{proxy['proxyId']}/x", HTTP_X_API_KEY=bought["apikey"])
    assert wrong_proxy.status_code == 401 and "another proxy" in wrong_proxy.json()["detail"]
    assert upstream.seen == []
    refused = client.post(
        "/api/invoice",
        {"proxyId": proxy["proxyId"], "method": "BREW", "path": "/x"},
        content_type="application/json",
    )
    assert refused.status_code == 400


def settle(bolt11: str) -> str:
    """Pay, and record the payment as the watcher would; returns the payment hash."""
    payment = get_backend().pay_invoice(bolt11)
    lightning.apply_settlements([get_backend().lookup_invoice(payment.payment_hash)])
    return payment.payment_hash


def test_deleting_a_proxy_keeps_what_its_one_time_keys_sold(client, shop, proxy, upstream):
    merchant, key = shop
    create_endpoint(merchant, "https://shop.example.com/hooks", ["l402.paid"])
    paid_unspent = buy_key(client, proxy)
    settle(paid_unspent["paymentRequest"])
    spent = buy_key(client, proxy, body='{"q": 2}')
    pay(spent["paymentRequest"])
    url = f"/l402/proxy/{proxy['proxyId']}/search"
    used = client.post(url, '{"q": 2}', "application/json", HTTP_X_API_KEY=spent["apikey"])
    assert echo(used)["body"] == '{"q": 2}'
    unpaid = buy_key(client, proxy, body='{"q": 3}')

    assert client.delete(f"/api/proxy/{proxy['proxyId']}", **key).status_code == 204
    assert not Proxy.objects.exists()
    keys = OneTimeKey.objects.select_related("invoice").order_by("pk")
    assert [(k.proxy_public_id, k.merchant, k.price_sats) for k in keys] == [
        (proxy["proxyId"], merchant, 21)
    ] * 3
    assert [k.invoice.state for k in keys] == ["paid", "paid", "open"]
    assert [k.spent_at is not None for k in keys] == [False, True, False]
    stats = client.get("/api/stats/l402", **key).json()
    assert stats["oneTimeKeys"] == {"issued": 3, "paid": 2, "spent": 1, "revenueSats": 42}
    assert stats["revenueSats"] == 42

    # The buyer of the paid, unspent key is told what happened, not "no such proxy".
    gone = client.post(url, '{"q": 1}', "application/json", HTTP_X_API_KEY=paid_unspent["apikey"])
    assert gone.status_code == 410 and gone["Content-Type"] == "application/problem+json"
    assert gone.json()["error"] == "proxy_deleted" and "refund" in gone.json()["detail"]
    again = client.post(
        "/api/invoice",
        {"proxyId": proxy["proxyId"], "method": "POST", "path": "/search"},
        content_type="application/json",
    )
    assert again.status_code == 410
    assert client.get("/l402/proxy/never-existed-1/x").status_code == 404

    # A key paid after its proxy is gone is still announced to the merchant.
    payment_hash = settle(unpaid["paymentRequest"])
    events = WebhookEvent.objects.filter(merchant=merchant, type="l402.paid")
    announced = {json.loads(e.body)["data"]["paymentHash"]: e for e in events}
    late = json.loads(announced[payment_hash].body)["data"]
    assert late["proxyId"] == proxy["proxyId"] and late["amountSats"] == 21
    assert len(upstream.seen) == 1


@pytest.mark.django_db(transaction=True)
def test_a_one_time_key_is_spent_once_under_32_concurrent_uses(upstream, settings):
    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = True
    client = Client()
    _, key = create_merchant("Race")
    proxy = make_proxy(client, {"HTTP_X_API_KEY": key}, upstream.url)
    bought = buy_key(client, proxy)
    pay(bought["paymentRequest"])
    url = f"/l402/proxy/{proxy['proxyId']}/search"
    start = threading.Barrier(32)
    statuses = []

    def use():
        try:
            start.wait()
            response = Client().post(
                url,
                data='{"q": 1}',
                content_type="application/json",
                HTTP_X_API_KEY=bought["apikey"],
            )
            if response.streaming:
                content(response)
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=use) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [401] * 31
    assert len(upstream.seen) == 1
    assert OneTimeKey.objects.get().spent_at is not None
