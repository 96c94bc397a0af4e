"""The merchant admin's webhook pages: scoped to the staff user's merchant, redeliver."""

import pytest
from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.utils import timezone

from checkout.models import MerchantUser
from checkout.services import create_merchant
from webhooks import services
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_targets(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True


def staff_of(merchant, name):
    user = User.objects.create_user(name, password="pw-123456789", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="webhooks", codename__regex=r"^(view|change)_"
        )
    )
    MerchantUser.objects.create(user=user, merchant=merchant)
    return user


@pytest.fixture
def shops():
    mine, _ = create_merchant("Mine")
    theirs, _ = create_merchant("Theirs")
    for merchant in (mine, theirs):
        endpoint = services.create_endpoint(merchant, f"http://127.0.0.1:9/{merchant.name}", ["*"])
        with transaction.atomic():
            services.emit(merchant, "webhook.test", {})
        WebhookDelivery.objects.filter(endpoint=endpoint).update(
            status="failed", lease_token="", locked_until=None
        )
    return mine, theirs


def test_staff_see_only_their_merchants_endpoints_and_deliveries(client, shops):
    mine, theirs = shops
    client.force_login(staff_of(mine, "barista"))
    page = client.get("/admin/webhooks/webhookendpoint/").content.decode()
    assert "/Mine" in page and "/Theirs" not in page
    page = client.get("/admin/webhooks/webhookdelivery/").content.decode()
    mine_delivery = WebhookDelivery.objects.get(event__merchant=mine)
    theirs_delivery = WebhookDelivery.objects.get(event__merchant=theirs)
    assert mine_delivery.public_id in page and theirs_delivery.public_id not in page
    theirs_url = f"/admin/webhooks/webhookdelivery/{theirs_delivery.pk}/change/"
    assert client.get(theirs_url).status_code == 302  # not found: back to the index
    mine_url = f"/admin/webhooks/webhookdelivery/{mine_delivery.pk}/change/"
    WebhookAttempt.objects.create(
        delivery=mine_delivery, number=1, started_at=timezone.now(), duration_ms=12, error="refused"
    )
    shown = client.get(mine_url)
    assert shown.status_code == 200
    assert "Attempt 1" in shown.content.decode()  # each attempt is named by its number
    assert "WebhookAttempt object" not in shown.content.decode()
    assert 'name="_save"' not in shown.content.decode()  # nothing to save: no button
    assert 'name="_continue"' not in shown.content.decode()


def test_redeliver_action(client, shops):
    mine, theirs = shops
    client.force_login(staff_of(mine, "barista"))
    response = client.post(
        "/admin/webhooks/webhookdelivery/",
        {
            "action": "redeliver",
            "_selected_action": [d.pk for d in WebhookDelivery.objects.all()],
        },
    )
    assert response.status_code == 302
    statuses = dict(WebhookDelivery.objects.values_list("event__merchant__name", "status"))
    assert statuses == {"Mine": "pending", "Theirs": "failed"}  # only what the user sees


def test_a_disabled_endpoint_says_why_and_the_operator_sees_all(admin_client, shops):
    mine, _ = shops
    WebhookEndpoint.objects.filter(merchant=mine).update(
        enabled=False, disabled_reason="Every delivery attempt failed for 5 days."
    )
    page = admin_client.get("/admin/webhooks/webhookendpoint/", follow=True).content.decode()
    assert "/Mine" in page and "/Theirs" in page
    assert "disabled: Every delivery attempt failed for 5 days." in page
