"""Endpoints and secrets under concurrent changes: an update does not undo what the
delivery path changed meanwhile, and two rotations at once both hand out a secret that
verifies. On both databases (PostgreSQL locks the row; SQLite's write lock serialises)."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from checkout.services import create_merchant
from webhooks import services, signing
from webhooks.models import MerchantWebhookSecret, WebhookEndpoint


@pytest.mark.django_db
def test_an_update_does_not_undo_a_concurrent_disable():
    merchant, _ = create_merchant("Roastery")
    endpoint = services.create_endpoint(merchant, "http://127.0.0.1:9/", ["*"])
    seen_by_patch = WebhookEndpoint.objects.get(pk=endpoint.pk)  # enabled, as read
    # Meanwhile the delivery path disables it (a conditional update of its own columns).
    now = timezone.now()
    WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, failing_since=now - timedelta(days=6), disabled_at=now, disabled_reason="x"
    )
    saved = services.update_endpoint(seen_by_patch, description="new text")
    fresh = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert fresh.description == saved.description == "new text"
    assert not fresh.enabled and not saved.enabled and fresh.disabled_reason == "x"
    # Enabling it, from that same stale view, clears the failure history it did not see.
    services.update_endpoint(seen_by_patch, enabled=True)
    fresh = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert fresh.enabled and fresh.failing_since is None and fresh.disabled_reason == ""


def _rotate_concurrently(model, pk) -> list[str]:
    """Two callers each read the holder, then both rotate: the interleaving that lost a
    secret."""
    holders = [model.objects.get(pk=pk) for _ in range(2)]
    both_read = threading.Barrier(2)
    handed, errors = [], []

    def rotate(holder):
        try:
            both_read.wait(timeout=10)
            handed.append(services.rotate_secret(holder))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=rotate, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(handed) == 2, errors
    return handed


def signed_by(holder) -> dict:
    """Headers of a message signed as a delivery signs it, with the holder's secrets."""
    body, timestamp = b'{"type": "webhook.test"}', int(time.time())
    return {
        "body": body,
        "headers": {
            "webhook-id": "evt_race",
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header(
                holder.signing_secrets(), "evt_race", timestamp, body
            ),
        },
    }


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_rotations_both_hand_out_a_secret_that_verifies():
    merchant, _ = create_merchant("Roastery")
    endpoint = services.create_endpoint(merchant, "http://127.0.0.1:9/", ["*"])
    holder = services.default_secret(merchant)
    for model, pk in ((WebhookEndpoint, endpoint.pk), (MerchantWebhookSecret, holder.pk)):
        handed = _rotate_concurrently(model, pk)
        message = signed_by(model.objects.get(pk=pk))
        for secret in handed:
            assert Webhook(secret).verify(message["body"], message["headers"])
