"""The rules the OpenAPI document states for every operation, each checked on its own (the
contract test, tests/test_api_contract.py, fuzzes them all): JSON types are not coerced,
money is a decimal string, an unknown method is a 405 before any key is asked for, a
missing referenced object is a 404, a taken slug a 409, lists are `{items, total}`."""

import pytest
from rest_framework.test import APIClient

from checkout.services import create_merchant

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def problem(response, status, error=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    if error:
        assert body["error"] == error, body
    return body


@pytest.fixture
def admin():
    _, raw = create_merchant("Roastery", "owner@roastery.example")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


@pytest.fixture(autouse=True)
def _local_targets(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = True


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/webhooks", {"url": "http://127.0.0.1:9/", "events": ["*"], "description": 0}, None),
        ("/api/webhooks", {"url": "http://127.0.0.1:9/", "events": ["*"], "enabled": 1}, None),
        ("/api/l402/content", {"slug": "a", "title": 7, "body": "b", "priceSats": 1}, "title"),
        (
            "/api/l402/content",
            {"slug": "a", "title": "t", "body": "b", "priceSats": "5"},
            "priceSats",
        ),
        (
            "/api/l402/content",
            {"slug": "a", "title": "t", "body": "b", "priceSats": 5, "isPublished": 0},
            "isPublished",
        ),
        ("/api/l402/content/bundle", {"slugs": [0]}, "slugs"),
        (
            "/api/l402/challenges",
            {"resource": "r", "priceSats": 1, "description": 0},
            "description",
        ),
        (
            "/api/proxy",
            {
                "name": "p",
                "targetBaseUrl": "http://127.0.0.1:9",
                "defaultPriceSats": 1,
                "authHeader": 5,
            },
            "authHeader",
        ),
    ],
)
def test_a_value_of_another_json_type_is_a_400_not_a_conversion(admin, url, body, field):
    errors = problem(admin.post(url, body, format="json"), 400, "validation_error")["errors"]
    named = field or next(name for name, value in body.items() if isinstance(value, int))
    assert named in errors, errors


def test_money_is_a_decimal_string_and_a_json_number_is_refused(admin):
    made = admin.post(
        "/api/checkout/products",
        {"name": "Beans", "price": "12.50", "currency": "USD"},
        format="json",
    )
    assert made.status_code == 201, made.content
    url = f"/api/checkout/products/{made.json()['productId']}"
    errors = problem(admin.patch(url, {"price": 13}, format="json"), 400)["errors"]
    assert "price" in errors
    for spelled in ("1e3", "12.", " 12"):
        errors = problem(admin.patch(url, {"price": spelled}, format="json"), 400)["errors"]
        assert "price" in errors, spelled
    assert admin.patch(url, {"price": "13"}, format="json").json()["price"] == "13.00"


def test_an_unknown_method_is_a_405_before_any_key_is_asked_for():
    anonymous = APIClient()
    for method, url in (
        ("put", "/api/webhooks"),  # needs an admin key for what it allows
        ("delete", "/api/l402/content"),  # public GET, admin POST
        ("patch", "/api/checkout/invoices"),
    ):
        response = getattr(anonymous, method)(url)
        problem(response, 405, "method_not_allowed")
        assert response["Allow"], url
    trace = anonymous.generic("TRACE", "/api/l402/content")
    problem(trace, 405, "method_not_allowed")
    assert set(trace["Allow"].split(", ")) >= {"GET", "POST", "HEAD", "OPTIONS"}


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_health_answers_get_and_head_only(client, method):
    response = getattr(client, method)("/api/health")
    problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"
    assert client.head("/api/health").status_code in (200, 503)


def test_a_taken_content_slug_is_a_conflict(admin):
    body = {"slug": "guide", "title": "Guide", "body": "...", "priceSats": 5}
    assert admin.post("/api/l402/content", body, format="json").status_code == 201
    errors = problem(admin.post("/api/l402/content", body, format="json"), 409, "slug_taken")
    assert "slug" in errors["errors"]


def test_the_keyless_product_checkout_takes_no_body_but_refuses_null(admin):
    made = admin.post(
        "/api/checkout/products", {"name": "Mug", "price": "9", "currency": "USD"}, format="json"
    )
    url = f"/api/checkout/products/{made.json()['productId']}/checkout"
    assert APIClient().post(url).status_code == 201
    problem(APIClient().post(url, "null", content_type="application/json"), 400)


def test_the_version_check_takes_ascii_versions_or_nothing():
    client = APIClient()
    assert client.get("/api/mcp/version-check", {"currentVersion": ""}).status_code == 200
    assert (
        client.get("/api/mcp/version-check", {"currentVersion": "v1.2.3-rc.1"}).status_code == 200
    )
    for bad in ("\u0661.\u0662", " 1.2", "1.2\r", "1" * 65):
        problem(client.get("/api/mcp/version-check", {"currentVersion": bad}), 400)


def test_a_proxys_endpoints_are_a_page_like_every_list(admin):
    made = admin.post(
        "/api/proxy",
        {"name": "p", "targetBaseUrl": "http://127.0.0.1:9", "defaultPriceSats": 1},
        format="json",
    )
    assert made.status_code == 201, made.content
    url = f"/api/proxy/{made.json()['proxyId']}/manifest/endpoints"
    for n in range(3):
        endpoint = {
            "endpointId": f"e{n}",
            "path": f"/v1/e{n}",
            "httpMethod": "GET",
            "basePriceSats": 2,
        }
        assert admin.post(url, endpoint, format="json").status_code == 201
    page = admin.get(url, {"limit": 2}).json()
    assert page["total"] == 3 and [e["endpointId"] for e in page["items"]] == ["e0", "e1"]
