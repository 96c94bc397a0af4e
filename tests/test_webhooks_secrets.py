"""Webhook signing secrets: encrypted at rest (new rows and, by a migration, old ones),
still verifying with a Standard Webhooks library."""

import base64
import hashlib
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from checkout.services import create_merchant
from shopify_bridge.models import ShopifyStore
from webhooks import services
from webhooks.models import MerchantWebhookSecret, WebhookDelivery, WebhookEndpoint


@pytest.fixture(autouse=True)
def _private_targets(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def merchant_and_api(db):
    merchant, key = create_merchant("Roastery")
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=key)
    return merchant, api


def stored(model, pk) -> dict:
    """The secret columns as the database holds them."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret, previous_secret FROM {table} WHERE id = %s", [pk])
        secret, previous = cursor.fetchone()
    return {"secret": secret, "previous_secret": previous}


def run_queued():
    for pk, token in WebhookDelivery.objects.exclude(lease_token="").values_list(
        "pk", "lease_token"
    ):
        services.attempt_delivery(pk, token)


def verifies(secret, received) -> bool:
    return Webhook(secret).verify(received.body, received.headers)["type"] == "webhook.test"


def test_endpoint_secrets_are_encrypted_at_rest_and_still_sign(merchant_and_api, receiver):
    merchant, api = merchant_and_api
    created = api.post(
        "/api/webhooks", {"url": receiver.url, "events": ["*"]}, format="json"
    ).json()
    rotated = api.post(f"/api/webhooks/{created['id']}/rotate-secret").json()
    endpoint = WebhookEndpoint.objects.get(public_id=created["id"])
    columns = stored(WebhookEndpoint, endpoint.pk)
    for plain, column in ((rotated["secret"], "secret"), (created["secret"], "previous_secret")):
        assert "whsec_" not in columns[column] and plain[6:] not in columns[column]
        assert getattr(endpoint, column) == plain
    api.post(f"/api/webhooks/{created['id']}/test")
    run_queued()
    [received] = receiver.requests
    assert verifies(created["secret"], received) and verifies(rotated["secret"], received)


def test_the_default_secret_is_encrypted_at_rest(merchant_and_api):
    merchant, api = merchant_and_api
    secret = api.get("/api/webhooks/default-secret").json()["secret"]
    row = MerchantWebhookSecret.objects.get(merchant=merchant)
    assert secret.startswith("whsec_") and row.secret == secret
    assert "whsec_" not in stored(MerchantWebhookSecret, row.pk)["secret"]


def test_another_key_cannot_read_them(merchant_and_api, settings):
    merchant, _ = merchant_and_api
    endpoint = services.create_endpoint(merchant, "http://127.0.0.1:9/", ["*"])
    settings.WEBHOOKS_SECRETS_KEY = "another key"
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == ""


def test_shopify_secrets_keep_their_ciphertext_format(merchant_and_api, settings):
    """Tokens stored before the field moved to config.fields still read back."""
    merchant, _ = merchant_and_api
    store = ShopifyStore.objects.create(
        merchant=merchant, slug="s", name="S", shop_domain="s.myshopify.com", access_token="x"
    )
    key = settings.SHOPIFY_SECRETS_KEY or settings.SECRET_KEY
    digest = hashlib.sha256(f"zapgate shopify secrets:{key}".encode()).digest()
    old_token = Fernet(base64.urlsafe_b64encode(digest)).encrypt(b"shpat_before").decode()
    ShopifyStore.objects.filter(pk=store.pk).update(access_token="placeholder")
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(ShopifyStore._meta.db_table)
        cursor.execute(f"UPDATE {table} SET access_token = %s WHERE id = %s", [old_token, store.pk])
    assert ShopifyStore.objects.get(pk=store.pk).access_token == "shpat_before"


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_secrets_already_stored():
    executor = MigrationExecutor(connection)
    before = [("webhooks", "0001_initial")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    merchant = old.get_model("checkout", "Merchant").objects.create(name="Old")
    endpoint = old.get_model("webhooks", "WebhookEndpoint").objects.create(
        merchant_id=merchant.pk,
        url="http://127.0.0.1:9/",
        events=["*"],
        secret="whsec_" + base64.b64encode(b"a" * 32).decode(),
        previous_secret="whsec_" + base64.b64encode(b"b" * 32).decode(),
        previous_secret_expires_at=timezone.now() + timedelta(hours=1),
    )
    default = old.get_model("webhooks", "MerchantWebhookSecret").objects.create(
        merchant_id=merchant.pk, secret="whsec_" + base64.b64encode(b"c" * 32).decode()
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    for model, row in ((WebhookEndpoint, endpoint), (MerchantWebhookSecret, default)):
        columns = stored(model, row.pk)
        assert not columns["secret"].startswith("whsec_")
        migrated = model.objects.get(pk=row.pk)
        assert migrated.secret == row.secret and migrated.previous_secret == row.previous_secret
    assert not stored(WebhookEndpoint, endpoint.pk)["previous_secret"].startswith("whsec_")
    assert stored(MerchantWebhookSecret, default.pk)["previous_secret"] == ""
