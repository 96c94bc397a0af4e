"""The webhooks API: every endpoint, and every bad input answered as problem+json."""

import pytest
from django.db import transaction
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from checkout.models import ApiKey
from checkout.services import create_merchant, issue_api_key
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _private_targets(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True


def client_for(raw_key):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


@pytest.fixture
def merchant_and_client():
    merchant, raw = create_merchant("Roastery", "owner@roastery.example")
    return merchant, client_for(raw)


@pytest.fixture
def api(merchant_and_client):
    return merchant_and_client[1]


def create(api, url, **fields):
    return api.post("/api/webhooks", {"url": url, "events": ["*"], **fields}, format="json")


def run_queued():
    for pk, token in WebhookDelivery.objects.exclude(lease_token="").values_list(
        "pk", "lease_token"
    ):
        services.attempt_delivery(pk, token)


def assert_problem(response, status, error, field=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["error"] == error and body["detail"]
    if field:
        assert field in body["errors"], body
    return body


def test_create_shows_the_secret_once(api, receiver):
    response = create(api, receiver.url, description="shop", events=["payment.completed"])
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("wh_") and body["secret"].startswith("whsec_")
    assert body["url"] == receiver.url and body["events"] == ["payment.completed"]
    assert body["enabled"] is True and body["description"] == "shop" and body["createdAt"]
    for url in (f"/api/webhooks/{body['id']}", "/api/webhooks"):
        shown = api.get(url).json()
        assert "secret" not in str(shown)


def test_list_get_patch_delete(api, receiver):
    ids = [create(api, receiver.url + f"/{n}").json()["id"] for n in range(3)]
    listed = api.get("/api/webhooks", {"limit": 2}).json()
    assert listed["total"] == 3 and [e["id"] for e in listed["items"]] == ids[::-1][:2]

    response = api.patch(
        f"/api/webhooks/{ids[0]}",
        {"events": ["payment.expired", "invoice.created"], "enabled": False},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["events"] == ["payment.expired", "invoice.created"]
    assert response.json()["enabled"] is False
    assert api.get(f"/api/webhooks/{ids[0]}").json()["enabled"] is False

    assert api.delete(f"/api/webhooks/{ids[0]}").status_code == 204
    assert_problem(api.get(f"/api/webhooks/{ids[0]}"), 404, "not_found")
    assert api.get("/api/webhooks").json()["total"] == 2


def test_rotate_secret_keeps_the_old_one_for_a_day(api, receiver):
    created = create(api, receiver.url).json()
    rotated = api.post(f"/api/webhooks/{created['id']}/rotate-secret").json()
    assert rotated["secret"] != created["secret"] and rotated["previousSecretExpiresAt"]
    api.post(f"/api/webhooks/{created['id']}/test")
    run_queued()
    [received] = receiver.requests
    for secret in (created["secret"], rotated["secret"]):
        assert Webhook(secret).verify(received.body, received.headers)["type"] == "webhook.test"


def test_test_event_deliveries_and_redeliver(api, receiver):
    endpoint = create(api, receiver.url).json()
    response = api.post(f"/api/webhooks/{endpoint['id']}/test")
    assert response.status_code == 202
    delivery = response.json()
    assert delivery["eventType"] == "webhook.test" and delivery["status"] == "pending"
    run_queued()

    listed = api.get(f"/api/webhooks/{endpoint['id']}/deliveries").json()
    assert listed["total"] == 1 and listed["items"][0]["status"] == "delivered"
    assert api.get(f"/api/webhooks/{endpoint['id']}/deliveries", {"status": "failed"}).json() == {
        "items": [],
        "total": 0,
    }

    detail = api.get(f"/api/webhooks/{endpoint['id']}/deliveries/{delivery['id']}").json()
    assert detail["event"]["id"] == delivery["eventId"] == receiver.requests[0].webhook_id
    assert detail["event"]["data"]["endpointId"] == endpoint["id"]
    [attempt] = detail["attempts"]
    assert attempt["statusCode"] == 200 and attempt["responseExcerpt"] == '{"ok":true}'
    assert attempt["number"] == 1 and attempt["at"] and attempt["durationMs"] >= 0
    assert detail["nextAttemptAt"] is None and detail["deliveredAt"]

    redone = api.post(f"/api/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver")
    assert redone.status_code == 202 and redone.json()["status"] == "pending"
    again = api.post(f"/api/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver")
    assert_problem(again, 409, "delivery_in_progress")
    run_queued()
    assert [r.webhook_id for r in receiver.requests] == [delivery["eventId"]] * 2
    detail = api.get(f"/api/webhooks/{endpoint['id']}/deliveries/{delivery['id']}").json()
    assert detail["attemptCount"] == 2 and detail["status"] == "delivered"


def test_redelivering_to_a_disabled_endpoint_is_refused(api, receiver):
    endpoint = create(api, receiver.url).json()
    delivery = api.post(f"/api/webhooks/{endpoint['id']}/test").json()
    run_queued()
    api.patch(f"/api/webhooks/{endpoint['id']}", {"enabled": False}, format="json")
    response = api.post(f"/api/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver")
    assert_problem(response, 409, "endpoint_disabled")


def test_default_secret_signs_and_rotates(api):
    first = api.get("/api/webhooks/default-secret").json()
    assert first["secret"].startswith("whsec_")
    assert api.get("/api/webhooks/default-secret").json()["secret"] == first["secret"]
    rotated = api.post("/api/webhooks/default-secret/rotate").json()
    assert rotated["secret"] != first["secret"] and rotated["previousSecretExpiresAt"]


def test_a_checkouts_own_url_gets_its_events_signed_with_the_default_secret(
    merchant_and_client, receiver
):
    merchant, api = merchant_and_client
    with transaction.atomic():
        services.emit(merchant, "payment.completed", {"x": 1}, extra_urls=[receiver.url])
    run_queued()
    secret = api.get("/api/webhooks/default-secret").json()["secret"]
    [received] = receiver.requests
    assert Webhook(secret).verify(received.body, received.headers)["data"] == {"x": 1}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"events": ["*"]}, "url"),
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "not a url", "events": ["*"]}, "url"),
        ({"url": 42, "events": ["*"]}, "url"),
        ({"url": "http://does-not-resolve.invalid/", "events": ["*"]}, "url"),
        ({"url": "http://example.com/"}, "events"),
        ({"url": "http://example.com/", "events": []}, "events"),
        ({"url": "http://example.com/", "events": "payment.completed"}, "events"),
        ({"url": "http://example.com/", "events": ["payment.maybe"]}, "events"),
        ({"url": "http://example.com/", "events": ["*"], "enabled": "yes"}, "enabled"),
        ({"url": "http://example.com/", "events": ["*"], "description": "x" * 501}, "description"),
    ],
)
def test_bad_input_is_a_400_and_writes_nothing(api, payload, field, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    response = api.post("/api/webhooks", payload, format="json")
    assert_problem(response, 400, "validation_error", field)
    assert WebhookEndpoint.objects.count() == 0


def test_malformed_json_is_a_400(api):
    response = api.post("/api/webhooks", "{nope", content_type="application/json")
    assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_private_targets_are_refused_at_save_when_the_guard_is_on(api, settings, url):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    body = assert_problem(create(api, url), 400, "validation_error", "url")
    assert "refused" in body["errors"]["url"][0]
    endpoint = create(api, "http://93.184.215.14/hook").json()  # a public address is fine
    patched = api.patch(f"/api/webhooks/{endpoint['id']}", {"url": url}, format="json")
    assert_problem(patched, 400, "validation_error", "url")
    assert WebhookEndpoint.objects.get().url == "http://93.184.215.14/hook"


def test_bad_filter_is_a_400(api, receiver):
    endpoint = create(api, receiver.url).json()
    response = api.get(f"/api/webhooks/{endpoint['id']}/deliveries", {"status": "lost"})
    assert_problem(response, 400, "validation_error", "status")
    response = api.get(f"/api/webhooks/{endpoint['id']}/deliveries", {"limit": "x"})
    assert_problem(response, 400, "validation_error", "limit")


def test_another_merchants_endpoints_and_deliveries_are_404(api, receiver):
    endpoint = create(api, receiver.url).json()
    delivery = api.post(f"/api/webhooks/{endpoint['id']}/test").json()
    _, other_key = create_merchant("Other shop")
    other = client_for(other_key)
    base = f"/api/webhooks/{endpoint['id']}"
    deliveries = f"{base}/deliveries/{delivery['id']}"
    assert other.get("/api/webhooks").json() == {"items": [], "total": 0}
    for method, url in [
        ("get", base),
        ("patch", base),
        ("delete", base),
        ("post", f"{base}/rotate-secret"),
        ("post", f"{base}/test"),
        ("get", f"{base}/deliveries"),
        ("get", deliveries),
        ("post", f"{deliveries}/redeliver"),
    ]:
        assert_problem(getattr(other, method)(url, {}, format="json"), 404, "not_found")
    # The owner asking for a delivery under another of its endpoints: also 404.
    second = create(api, receiver.url + "/2").json()
    assert_problem(
        api.get(f"/api/webhooks/{second['id']}/deliveries/{delivery['id']}"), 404, "not_found"
    )
    assert WebhookEndpoint.objects.filter(public_id=endpoint["id"]).exists()


def test_an_invoice_key_is_403_and_no_key_401(merchant_and_client):
    merchant, _ = merchant_and_client
    _, raw = issue_api_key(merchant, ApiKey.Kind.INVOICE, "shop")
    invoice_client = client_for(raw)
    for method, url in [
        ("get", "/api/webhooks"),
        ("post", "/api/webhooks"),
        ("get", "/api/webhooks/default-secret"),
    ]:
        assert_problem(getattr(invoice_client, method)(url), 403, "forbidden")
        assert_problem(getattr(APIClient(), method)(url), 401, "unauthorized")


def test_openapi_describes_every_webhooks_endpoint(api):
    schema = APIClient().get("/openapi.json", HTTP_ACCEPT="application/json").json()
    paths = [p for p in schema["paths"] if p.startswith("/api/webhooks")]
    assert len(paths) == 9
