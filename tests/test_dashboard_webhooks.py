"""The merchant site's webhook pages: adding, editing, testing, rotating and deleting an
endpoint, a delivery's page and redelivery, against a real receiver on loopback; bad input;
one merchant's staff never reaching another's endpoints or deliveries; the pages in Chromium.

There is no Celery worker here: where a test sends, it runs what the worker's task runs
(`services.attempt_delivery`) for each leased delivery.
"""

import json
import re

import pytest
from django.db import transaction
from django.test import Client
from django.utils.html import escape
from standardwebhooks.webhooks import Webhook

from checkout.services import create_merchant
from checkout.staff import create_merchant_user
from webhooks import services
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

from .browser_support import PHONE, WIDTHS, browser_page, chromium, overflows_horizontally
from .browser_support import screenshot as save_screenshot

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _private_targets(settings):
    # The receiver is on loopback; the SSRF test turns this off again.
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOKS_TIMEOUT_SECONDS = 5


def staff_client(name):
    merchant, _ = create_merchant(name, f"owner@{name.lower()}.example")
    user = create_merchant_user(f"{name.lower()}-staff", merchant, PASSWORD)
    client = Client()
    client.force_login(user)
    return merchant, client


@pytest.fixture
def shop_a():
    return staff_client("Roastery")


@pytest.fixture
def shop_b():
    return staff_client("Bakery")


def run_queued():
    """What the worker's task does for each leased delivery."""
    attempts = []
    for pk, token in WebhookDelivery.objects.exclude(lease_token="").values_list(
        "pk", "lease_token"
    ):
        attempts.append(services.attempt_delivery(pk, token))
    return attempts


def html(response) -> str:
    return response.content.decode()


def add_through_form(client, url, events, description="", enabled=True):
    data = {"url": url, "description": description, "events": events}
    if enabled:
        data["enabled"] = "on"
    return client.post("/dashboard/webhooks", data)


def test_an_endpoint_added_through_the_form_shows_its_secret_once(shop_a, receiver):
    merchant, client = shop_a
    page = client.get("/dashboard/webhooks")
    assert page.status_code == 200
    for name in services.EVENT_TYPES:  # every registered type is offered as a checkbox
        assert f'value="{name}"' in html(page)
    assert 'value="*"' in html(page)

    response = add_through_form(
        client, receiver.url, ["payment.completed", "payment.expired"], description="Shop"
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(merchant=merchant)
    assert endpoint.url == receiver.url and endpoint.description == "Shop"
    assert endpoint.events == ["payment.completed", "payment.expired"] and endpoint.enabled
    assert endpoint.secret.startswith("whsec_")
    shown = html(response)
    assert shown.count(endpoint.secret) == 2  # the field and its copy button
    assert f'data-copy="{endpoint.secret}"' in shown
    assert response["Cache-Control"] == "no-store"

    for url in ("/dashboard/webhooks", f"/dashboard/webhooks/{endpoint.public_id}"):
        again = client.get(url)
        assert again.status_code == 200
        assert endpoint.secret not in html(again)
    listed = html(client.get("/dashboard/webhooks"))
    assert receiver.url in listed and "Shop" in listed and "payment.expired" in listed


def test_all_events_is_stored_as_a_star(shop_a, receiver):
    merchant, client = shop_a
    add_through_form(client, receiver.url, ["*", "payment.completed"], enabled=False)
    endpoint = WebhookEndpoint.objects.get(merchant=merchant)
    assert endpoint.events == ["*"] and not endpoint.enabled
    listed = html(client.get("/dashboard/webhooks"))
    assert "all events" in listed and "disabled" in listed


@pytest.mark.parametrize(
    "url, events, field, error",
    [
        ("http://127.0.0.1:8080/hooks", ["*"], "url", "resolves to 127.0.0.1, a private"),
        ("http://10.1.2.3/hooks", ["*"], "url", "resolves to 10.1.2.3, a private"),
        ("ftp://example.com/hooks", ["*"], "url", "only http and https URLs are allowed"),
        ("not a url", ["*"], "url", "only http and https URLs are allowed"),
        ("https://", ["*"], "url", "the URL has no host"),
        # A public address (a literal: no DNS needed); nothing is sent to it.
        ("https://1.1.1.1/hooks", [], "events", "Choose at least one event, or all events."),
        ("https://1.1.1.1/hooks", ["no.such.event"], "events", "not one of the available"),
    ],
)
def test_bad_input_shows_the_form_again_with_the_error_and_saves_nothing(
    shop_a, settings, url, events, field, error
):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False  # as in production
    merchant, client = shop_a
    response = add_through_form(client, url, events, description="kept")
    assert response.status_code == 400
    page = html(response)
    # The error is next to its field (and named by the field's aria-describedby).
    shown = re.search(rf'<[a-z]+ class="error" role="alert" id="id_{field}_error">([^<]*)<', page)
    assert shown and escape(error) in shown.group(1), page
    if field == "url":
        assert re.search(r'aria-describedby="[^"]*id_url_error"', page)
    assert not WebhookEndpoint.objects.filter(merchant=merchant).exists()
    assert 'value="kept"' in page  # what the merchant typed is still there
    assert "whsec_" not in page


def test_edit_saves_the_fields_and_refuses_a_private_url(shop_a, settings, receiver):
    merchant, client = shop_a
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    page = f"/dashboard/webhooks/{endpoint.public_id}"
    shown = html(client.get(page))
    assert f'value="{receiver.url}"' in shown

    response = client.post(
        page,
        {"url": receiver.url + "/v2", "description": "New", "events": ["invoice.created"]},
    )
    assert response.status_code == 302 and response["Location"] == page
    endpoint.refresh_from_db()
    assert endpoint.url == receiver.url + "/v2" and endpoint.description == "New"
    assert endpoint.events == ["invoice.created"] and not endpoint.enabled
    assert "Endpoint saved." in html(client.get(page))

    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    response = client.post(
        page, {"url": "http://192.168.1.10/hooks", "events": ["*"], "enabled": "on"}
    )
    assert response.status_code == 400
    assert "resolves to 192.168.1.10" in html(response)
    endpoint.refresh_from_db()
    assert endpoint.url == receiver.url + "/v2" and not endpoint.enabled


def test_enabling_a_disabled_endpoint_again_clears_its_disabling(shop_a, receiver):
    merchant, client = shop_a
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, disabled_reason="Every delivery attempt failed for 5 days."
    )
    page = f"/dashboard/webhooks/{endpoint.public_id}"
    assert "Every delivery attempt failed for 5 days." in html(client.get(page))
    assert "Every delivery attempt failed for 5 days." in html(client.get("/dashboard/webhooks"))
    client.post(page, {"url": receiver.url, "events": ["*"], "enabled": "on"})
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == ""


def test_a_test_event_reaches_the_receiver_and_shows_on_the_delivery_page(shop_a, receiver):
    merchant, client = shop_a
    add_through_form(client, receiver.url, ["payment.completed"])
    endpoint = WebhookEndpoint.objects.get(merchant=merchant)
    page = f"/dashboard/webhooks/{endpoint.public_id}"

    response = client.post(f"{page}/test")
    assert response.status_code == 302 and response["Location"] == page
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    run_queued()

    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    payload = Webhook(endpoint.secret).verify(received.body, received.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["endpointId"] == endpoint.public_id

    endpoint_page = html(client.get(page))
    assert "Test event sent" in endpoint_page and delivery.public_id in endpoint_page
    assert f'href="/dashboard/webhooks/deliveries/{delivery.public_id}"' in endpoint_page
    assert '<span class="pill delivered">delivered</span>' in endpoint_page
    assert "HTTP 200" in endpoint_page

    shown = html(client.get(f"/dashboard/webhooks/deliveries/{delivery.public_id}"))
    assert delivery.event.public_id in shown and "webhook.test" in shown
    assert escape(receiver.url) in shown
    # The exact body, indented, escaped.
    pretty = json.dumps(json.loads(received.body), indent=2, ensure_ascii=False)
    assert f'<pre class="code mono small" id="event-body">{escape(pretty)}</pre>' in shown
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert '<tr data-attempt="1">' in shown and "HTTP 200" in shown
    assert f"{attempt.duration_ms} ms" in shown
    assert escape('{"ok":true}') in shown  # the receiver's answer


def test_redeliver_makes_a_new_attempt(shop_a, receiver):
    merchant, client = shop_a
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    client.post(f"/dashboard/webhooks/{endpoint.public_id}/test")
    run_queued()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    page = f"/dashboard/webhooks/deliveries/{delivery.public_id}"

    response = client.post(f"{page}/redeliver")
    assert response.status_code == 302 and response["Location"] == page
    run_queued()

    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body  # the same event
    assert receiver.requests[1].webhook_id == delivery.event.public_id
    delivery.refresh_from_db()
    assert delivery.attempt_count == 2 and delivery.status == "delivered"
    shown = html(client.get(page))
    assert '<tr data-attempt="1">' in shown and '<tr data-attempt="2">' in shown
    assert "Sent again" in shown


def test_redeliver_to_a_disabled_endpoint_says_why_not(shop_a, receiver):
    merchant, client = shop_a
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    delivery = services.send_test_event(endpoint)
    run_queued()
    services.update_endpoint(endpoint, enabled=False)
    page = f"/dashboard/webhooks/deliveries/{delivery.public_id}"
    response = client.post(f"{page}/redeliver", follow=True)
    assert "The endpoint is disabled; enable it first." in html(response)
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


def test_rotate_shows_a_new_secret_that_the_receiver_verifies(shop_a, receiver):
    merchant, client = shop_a
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    old = endpoint.secret
    page = f"/dashboard/webhooks/{endpoint.public_id}"

    response = client.post(f"{page}/rotate")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    endpoint.refresh_from_db()
    new = endpoint.secret
    assert new != old and new.startswith("whsec_")
    shown = html(response)
    assert f'data-copy="{new}"' in shown and old not in shown
    expires = endpoint.previous_secret_expires_at.strftime("%Y-%m-%d %H:%M UTC")
    assert "The old secret stays valid until" in shown and expires in shown
    assert new not in html(client.get(page))  # shown once

    client.post(f"{page}/test")
    run_queued()
    received = receiver.requests[-1]
    assert Webhook(new).verify(received.body, received.headers)["type"] == "webhook.test"
    # The old one still verifies during the overlap.
    assert Webhook(old).verify(received.body, received.headers)["type"] == "webhook.test"


def test_delete_removes_the_endpoint(shop_a, receiver):
    merchant, client = shop_a
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    response = client.post(f"/dashboard/webhooks/{endpoint.public_id}/delete", follow=True)
    assert response.redirect_chain[-1][0] == "/dashboard/webhooks"
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert "deleted" in html(response)
    assert client.get(f"/dashboard/webhooks/{endpoint.public_id}").status_code == 404


def test_a_delivery_to_a_checkouts_own_webhook_url_is_the_merchants(shop_a, shop_b, receiver):
    merchant, client = shop_a
    with transaction.atomic():
        event = services.emit(
            merchant, "payment.completed", {"invoiceId": "inv_1"}, extra_urls=[receiver.url]
        )
    delivery = event.deliveries.get()
    assert delivery.endpoint is None
    run_queued()
    page = f"/dashboard/webhooks/deliveries/{delivery.public_id}"
    shown = html(client.get(page))
    assert "payment.completed" in shown and escape(receiver.url) in shown
    assert "own webhook URL" in shown and '<tr data-attempt="1">' in shown
    assert shop_b[1].get(page).status_code == 404
    assert shop_b[1].post(f"{page}/redeliver").status_code == 404


def test_another_merchants_endpoints_and_deliveries_are_not_found(shop_a, shop_b, receiver):
    merchant_a, client_a = shop_a
    _, client_b = shop_b
    endpoint = services.create_endpoint(merchant_a, receiver.url + "/a-only", ["*"])
    secret = endpoint.secret
    delivery = services.send_test_event(endpoint)
    run_queued()
    page = f"/dashboard/webhooks/{endpoint.public_id}"
    delivery_page = f"/dashboard/webhooks/deliveries/{delivery.public_id}"

    assert client_b.get(page).status_code == 404
    assert client_b.get(delivery_page).status_code == 404
    edit = {"url": receiver.url + "/b", "events": ["*"], "enabled": "on"}
    assert client_b.post(page, edit).status_code == 404
    for action in ("test", "rotate", "delete"):
        assert client_b.post(f"{page}/{action}").status_code == 404
    assert client_b.post(f"{delivery_page}/redeliver").status_code == 404
    listed = html(client_b.get("/dashboard/webhooks"))
    assert "a-only" not in listed and endpoint.public_id not in listed

    endpoint.refresh_from_db()
    assert endpoint.url == receiver.url + "/a-only" and endpoint.secret == secret
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1
    assert len(receiver.requests) == 1
    # Merchant A still sees all of it.
    assert client_a.get(page).status_code == 200
    assert client_a.get(delivery_page).status_code == 200


def test_the_pages_need_a_signed_in_merchant(shop_a, receiver):
    merchant, _ = shop_a
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    anonymous = Client()
    for url in ("/dashboard/webhooks", f"/dashboard/webhooks/{endpoint.public_id}"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/dashboard/login" in response["Location"]
    assert anonymous.post(f"/dashboard/webhooks/{endpoint.public_id}/rotate").status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == ""


def test_posts_need_a_csrf_token(receiver):
    merchant, _ = create_merchant("Roastery")
    user = create_merchant_user("barista", merchant, PASSWORD)
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"/dashboard/webhooks/{endpoint.public_id}/rotate").status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == ""


# --- in a browser ------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_add_an_endpoint_and_open_its_delivery_in_a_browser(live_server, receiver):
    merchant, _ = create_merchant("Roastery", "owner@roastery.example")
    create_merchant_user("barista", merchant, PASSWORD)
    with chromium() as browser, browser_page(browser, viewport=PHONE) as page:
        page.goto(f"{live_server.url}/dashboard/login")
        page.fill("#id_username", "barista")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{live_server.url}/dashboard/webhooks")
        assert not overflows_horizontally(page)

        page.fill("#id_url", receiver.url + "/a/rather/long/path/that/might/not/fit/on/a/phone")
        page.fill("#id_description", "The shop's order system")
        page.check("input[value='payment.completed']")
        page.click("#add-endpoint button[type=submit]")
        page.wait_for_selector("#new-secret")
        endpoint = WebhookEndpoint.objects.get(merchant=merchant)
        assert page.input_value("#new-secret-value") == endpoint.secret
        assert endpoint.events == ["payment.completed"]
        assert not overflows_horizontally(page)
        for viewport in WIDTHS.values():
            page.set_viewport_size(viewport)
            save_screenshot(page, "dashboard-webhooks")
        page.set_viewport_size(PHONE)

        page.click(f"a[href='/dashboard/webhooks/{endpoint.public_id}'] >> nth=0")
        page.click("#send-test")
        page.wait_for_selector("text=Test event sent")
        run_queued()
        page.reload()
        page.click("#deliveries a.mono")
        page.wait_for_selector("#event-body")
        assert "webhook.test" in page.inner_text("#event-body")
        assert page.inner_text("#attempts").count("HTTP 200") == 1
        assert not overflows_horizontally(page)
        for viewport in WIDTHS.values():
            page.set_viewport_size(viewport)
            save_screenshot(page, "dashboard-webhooks-delivery")
        page.set_viewport_size(PHONE)
        page.click(f"a[href='/dashboard/webhooks/{endpoint.public_id}']")
        page.wait_for_selector("#deliveries")
        assert not overflows_horizontally(page)
        for viewport in WIDTHS.values():
            page.set_viewport_size(viewport)
            save_screenshot(page, "dashboard-webhooks-endpoint")
    assert len(receiver.requests) == 1
