"""Merchant staff manage their own content, proxies and endpoints in the admin site."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from checkout.services import create_merchant
from checkout.staff import create_merchant_user
from l402.forwarding import unseal
from l402.models import PaidContent, Proxy

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    merchant, _ = create_merchant("Ours")
    user = create_merchant_user("ours-staff", merchant, "pw-ours-123456")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="l402",
            codename__in=[
                f"{action}_{model}"
                for model in ("paidcontent", "proxy", "proxyendpoint")
                for action in ("view", "add", "change", "delete")
            ],
        )
    )
    client = Client()
    client.force_login(user)
    return merchant, client


def test_staff_see_and_change_only_their_merchant_s_rows(staff):
    merchant, client = staff
    other, _ = create_merchant("Theirs")
    PaidContent.objects.create(merchant=merchant, slug="ours", title="Ours", body="b", price_sats=1)
    theirs = PaidContent.objects.create(
        merchant=other, slug="theirs", title="Theirs", body="b", price_sats=1
    )
    listing = client.get("/admin/l402/paidcontent/")
    assert listing.status_code == 200
    assert b"Ours" in listing.content and b"Theirs" not in listing.content
    assert client.get(f"/admin/l402/paidcontent/{theirs.pk}/change/").status_code == 302


def test_a_proxy_made_in_the_admin_is_the_staff_s_with_a_sealed_credential(staff, settings):
    merchant, client = staff
    form = {
        "name": "Admin API",
        "description": "",
        "is_active": "on",
        "target_base_url": "http://127.0.0.1:9/",
        "default_price_sats": "5",
        "timeout_seconds": "30",
        "auth_header": "X-Key",
        "auth_value": "hush",
        "allowed_methods": "[]",
        "allowed_paths": "[]",
        "blocked_paths": "[]",
        "manifest_enabled": "on",
        "service_description": "",
        "documentation_url": "",
        "categories": "[]",
        "endpoints-TOTAL_FORMS": "1",
        "endpoints-INITIAL_FORMS": "0",
        "endpoints-0-endpoint_id": "search",
        "endpoints-0-http_method": "GET",
        "endpoints-0-path": "/search",
        "endpoints-0-summary": "",
        "endpoints-0-base_price_sats": "9",
    }
    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = False
    refused = client.post("/admin/l402/proxy/add/", form)
    assert refused.status_code == 200 and b"refused" in refused.content
    assert not Proxy.objects.exists()

    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = True
    saved = client.post("/admin/l402/proxy/add/", form)
    assert saved.status_code == 302, saved.content
    proxy = Proxy.objects.get()
    assert proxy.merchant == merchant and proxy.proxy_id.startswith("admin-api-")
    assert proxy.auth_value_encrypted != "hush" and unseal(proxy.auth_value_encrypted) == "hush"
    assert proxy.endpoints.get().base_price_sats == 9
