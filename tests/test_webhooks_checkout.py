"""Checkout's webhooks through its API: invoice.created, and an invoice's own webhookUrl."""

import json

import pytest
from django.db import transaction
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from checkout.models import CheckoutInvoice
from checkout.services import create_merchant
from lightning import services as lightning
from lightning.backends import get_backend
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_targets(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def shop():
    merchant, raw = create_merchant("Roastery")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return merchant, client


def send_leased():
    for pk, token in WebhookDelivery.objects.exclude(lease_token="").values_list(
        "pk", "lease_token"
    ):
        services.attempt_delivery(pk, token)


def test_invoice_created_then_paid_reach_the_endpoint_and_the_invoices_own_url(shop, receiver):
    merchant, api = shop
    endpoint = services.create_endpoint(merchant, receiver.url + "/endpoint", ["*"])
    response = api.post(
        "/api/checkout/invoices",
        {
            "amount": "2100",
            "currency": "SAT",
            "userRef": "order-9",
            "webhookUrl": receiver.url + "/own",
            "metadata": {"sku": "beans"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["webhookUrl"] == receiver.url + "/own"
    send_leased()

    checkout = CheckoutInvoice.objects.get(public_id=created["invoiceId"])
    get_backend().pay_invoice(checkout.invoice.bolt11)
    lightning.apply_settlements([get_backend().lookup_invoice(checkout.invoice.payment_hash)])
    send_leased()

    default_secret = api.get("/api/webhooks/default-secret").json()["secret"]
    secrets = {"/hooks/endpoint": endpoint.secret, "/hooks/own": default_secret}
    seen = {}
    for received in receiver.requests:
        payload = Webhook(secrets[received.path]).verify(received.body, received.headers)
        seen.setdefault(received.path, []).append(payload["type"])
        assert payload["data"]["invoiceId"] == created["invoiceId"]
        assert payload["data"]["userRef"] == "order-9"
        assert payload["data"]["amount"] == created["amount"]
        assert payload["data"]["amountSats"] == 2100
        assert payload["data"]["metadata"] == {"sku": "beans"}
    assert seen == {
        "/hooks/endpoint": ["invoice.created", "payment.completed"],
        "/hooks/own": ["invoice.created", "payment.completed"],
    }
    created_event = json.loads(WebhookEvent.objects.get(type="invoice.created").body)
    assert created_event["data"]["status"] == "unpaid" and created_event["data"]["paidAt"] is None


def test_an_idempotent_retry_announces_the_invoice_once(shop, receiver):
    merchant, api = shop
    services.create_endpoint(merchant, receiver.url, ["invoice.created"])
    body = {"amount": "5", "currency": "USD"}
    for _ in range(2):
        response = api.post(
            "/api/checkout/invoices", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
        assert response.status_code in (200, 201)
    assert WebhookEvent.objects.filter(type="invoice.created").count() == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "gopher://example.com/",
        "not a url",
    ],
)
def test_a_webhook_url_that_is_not_allowed_is_a_400_and_makes_no_invoice(shop, settings, url):
    _, api = shop
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    response = api.post(
        "/api/checkout/invoices",
        {"amount": "5", "currency": "USD", "webhookUrl": url},
        format="json",
    )
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert "webhookUrl" in response.json()["errors"]
    assert CheckoutInvoice.objects.count() == 0


def test_a_checkout_emits_inside_its_transaction(shop, receiver):
    merchant, api = shop
    services.create_endpoint(merchant, receiver.url, ["*"])
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            api.post("/api/checkout/invoices", {"amount": "5", "currency": "USD"}, format="json")
            raise RuntimeError("roll back")
    assert WebhookEvent.objects.count() == 0 and WebhookDelivery.objects.count() == 0
