"""The Shopify bridge under real concurrency and with a real Celery worker (the watcher
marks the cart paid; the outbox task creates the order in the fake Shopify)."""

import json
import threading

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from lightning.backends import get_backend
from shopify_bridge.catalog import sync_catalog
from shopify_bridge.models import ShopifyOrder, ShopifyOrderPush
from tests import test_shopify_support as support
from tests.processes import Worker, wait_for
from tests.test_shopify_orders import ADDRESS, claim, pay, post_json, redeem, start
from tests.test_shopify_support import standard_catalog

fake_shopify = support.fake_shopify
local_cache = support.local_cache
merchant_and_key = support.merchant_and_key
store = support.store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def synced(store, fake_shopify, local_cache):
    standard_catalog(fake_shopify)
    sync_catalog(store)
    return store


def test_a_claim_token_works_once_under_concurrent_claims(synced):
    client = Client()
    challenge = start(client, [{"variantId": 1001}]).json()
    token = redeem(client, challenge, pay(challenge)).json()["claimToken"]
    barrier = threading.Barrier(8)
    codes = []

    def claim_at_once():
        try:
            barrier.wait()
            codes.append(claim(Client(), token).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim_at_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes) == [200] + [404] * 7
    assert ShopifyOrderPush.objects.count() == 1


@pytest.mark.process
def test_a_real_worker_takes_the_order_from_payment_to_shopify(synced, fake_shopify, tmp_path):
    worker = Worker(
        tmp_path,
        "shopify",
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        SHOPIFY_API_BASE_URL=fake_shopify.url_template,
    ).start()
    try:
        client = Client()
        challenge = start(client, [{"variantId": 3001, "quantity": 2}]).json()
        order = ShopifyOrder.objects.get(public_id=challenge["orderId"])
        preimage = get_backend().pay_invoice(challenge["invoice"]).preimage
        wait_for(
            lambda: ShopifyOrder.objects.get(pk=order.pk).status == "AwaitingDetails",
            30,
            "the worker's watcher to mark the cart paid",
        )
        token = redeem(client, challenge, preimage).json()["claimToken"]
        body = {"claimToken": token, "email": "ada@example.com", "shippingAddress": ADDRESS}
        response = post_json(client, "/api/shopify/zap-apparel/claim", body)
        assert response.status_code == 200, response.content
        wait_for(
            lambda: ShopifyOrder.objects.get(pk=order.pk).status == "Placed",
            30,
            "the worker to create the order in Shopify",
        )
        assert len(fake_shopify.orders) == 1
        status = client.get(
            f"/api/shopify/zap-apparel/orders/{order.public_id}", {"claimToken": token}
        )
        assert json.loads(status.content)["shopifyOrderNumber"] == "#1001"
    finally:
        worker.stop()
