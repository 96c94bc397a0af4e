"""Catalog sync from the (fake) Shopify Admin GraphQL API, and the public catalog."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from shopify_bridge.catalog import sync_catalog
from shopify_bridge.models import ShopifyProduct, ShopifyVariant
from shopify_bridge.shopify import ShopifyClient, ShopifyError, ShopifyUnavailable
from tests import test_shopify_support as support
from tests.test_shopify_support import standard_catalog

fake_shopify = support.fake_shopify
local_cache = support.local_cache
merchant_and_key = support.merchant_and_key
store = support.store

pytestmark = pytest.mark.django_db


def recording_client(store, fake):
    """A client whose waits are recorded and let the fake's time pass instead of sleeping."""
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        fake.let_time_pass(seconds)

    return ShopifyClient(store, sleep=sleep), waits


def test_sync_follows_product_and_variant_pages(store, fake_shopify):
    for n in range(23):
        fake_shopify.add_product(
            500 + n, f"Product {n:02d}", [(9000 + n, "Default Title", f"{n + 1}.25", True, 5)]
        )
    many = [(70000 + i, f"Size {i}", "3.00", i % 2 == 0, 1) for i in range(170)]
    fake_shopify.add_product(600, "Zz Many sizes", many)

    result = sync_catalog(store)

    assert (result.products, result.variants, result.pages) == (24, 193, 3)
    products = fake_shopify.operations().count("CatalogProducts")
    assert products == 3
    assert fake_shopify.operations().count("CatalogVariants") == 2  # 50 + 100 + the rest
    variant = ShopifyVariant.objects.get(variant_id=9007)
    assert (str(variant.price_usd), variant.available, variant.product.title) == (
        "8.25",
        True,
        "Product 07",
    )
    many_sizes = ShopifyProduct.objects.get(product_id=600)
    assert many_sizes.variants.count() == 170
    assert many_sizes.variants.filter(available=True).count() == 85
    store.refresh_from_db()
    assert store.catalog_synced_at is not None and store.last_sync_error == ""


def test_sync_replaces_the_copy(store, fake_shopify):
    standard_catalog(fake_shopify)
    sync_catalog(store)
    fake_shopify.products = [p for p in fake_shopify.products if p["title"] != "Mug"]
    fake_shopify.products[0]["variants"][0]["price"] = "19.00"
    sync_catalog(store)
    assert not ShopifyProduct.objects.filter(product_id=103).exists()
    assert not ShopifyVariant.objects.filter(variant_id=3001).exists()
    assert str(ShopifyVariant.objects.get(variant_id=1001).price_usd) == "19.00"


def test_sync_waits_out_429_with_retry_after(store, fake_shopify):
    standard_catalog(fake_shopify)
    fake_shopify.throttle_429 = 2
    fake_shopify.retry_after = "3"
    client, waits = recording_client(store, fake_shopify)
    result = sync_catalog(store, client=client)
    assert result.products == 3
    assert waits == [3.0, 3.0]
    assert fake_shopify.operations() == ["CatalogProducts"] * 3


def test_sync_waits_for_the_cost_bucket_on_throttled_errors(store, fake_shopify):
    standard_catalog(fake_shopify)
    fake_shopify.available = 10  # less than a page of products costs (53)
    client, waits = recording_client(store, fake_shopify)
    result = sync_catalog(store, client=client)
    assert result.products == 3
    # One THROTTLED answer, then a wait long enough for the bucket to hold the cost.
    assert len(waits) == 1 and waits[0] >= (53 - 10) / 100
    assert fake_shopify.operations() == ["CatalogProducts", "CatalogProducts"]


def test_sync_paces_itself_from_throttle_status(store, fake_shopify):
    """When the last answer says the bucket is low, the next page waits before asking."""
    for n in range(25):
        fake_shopify.add_product(500 + n, f"P{n:02d}", [(9000 + n, "Default", "1.00", True, 1)])
    fake_shopify.available = 110  # enough for two pages (53 each), not three
    client, waits = recording_client(store, fake_shopify)
    sync_catalog(store, client=client)
    assert fake_shopify.operations() == ["CatalogProducts"] * 3  # never throttled
    assert len(waits) == 1 and waits[0] >= (53 - 4) / 100


def test_a_failed_sync_keeps_the_copy_and_records_the_error(store, fake_shopify):
    standard_catalog(fake_shopify)
    sync_catalog(store)
    fake_shopify.fail_status = 500
    with pytest.raises(ShopifyUnavailable):
        sync_catalog(store)
    assert ShopifyVariant.objects.filter(store=store).count() == 5
    store.refresh_from_db()
    assert "500" in store.last_sync_error


def test_a_wrong_token_is_a_clear_error(store, fake_shopify):
    store.access_token = "shpat_wrong"
    store.save()
    with pytest.raises(ShopifyError, match="refused the access token"):
        sync_catalog(store)


def test_the_token_is_encrypted_at_rest(store):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM shopify_bridge_shopifystore")
        (stored,) = cursor.fetchone()
    assert "shpat" not in stored
    store.refresh_from_db()
    assert store.access_token.startswith("shpat_test_")


def test_the_sync_command_shows_progress(store, fake_shopify):
    for n in range(12):
        fake_shopify.add_product(500 + n, f"P{n:02d}", [(9000 + n, "Default", "1.00", True, 1)])
    out = io.StringIO()
    call_command("shopify_sync", store.slug, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[------------------------------] 0/12")
    assert lines[1].startswith("[#########################-----] 10/12")
    assert lines[2].startswith("[##############################] 12/12")
    assert "Synced 12 products and 12 variants of Zap Apparel in 2 pages." in lines[3]


def test_the_sync_command_fails_clearly(store, fake_shopify):
    fake_shopify.down = True
    with pytest.raises(CommandError, match="could not be reached"):
        call_command("shopify_sync", store.slug, stdout=io.StringIO())
    with pytest.raises(CommandError, match="No Shopify store"):
        call_command("shopify_sync", "nope", stdout=io.StringIO())


def test_catalog_is_public_and_cacheable(client, store, fake_shopify, local_cache):
    standard_catalog(fake_shopify)
    sync_catalog(store)
    response = client.get(f"/api/shopify/{store.slug}/catalog")
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=60"
    body = json.loads(response.content)
    assert body["storeName"] == "Zap Apparel" and body["slug"] == "zap-apparel"
    assert body["shipping"] == {
        "domesticUsd": "5.00",
        "domesticCountry": "US",
        "domesticOnly": True,
        "freeShippingEnabled": True,
        "freeShippingThresholdUsd": "50.00",
    }
    shirt = body["products"][0]
    assert shirt == {
        "productId": 101,
        "title": "Lightning T-shirt",
        "description": "Soft cotton.",
        "imageUrl": "https://cdn.shopify.com/s/files/shirt.png",
        "variants": [
            {"variantId": 1001, "title": "S", "priceUsd": "20.00", "available": True},
            {"variantId": 1002, "title": "M", "priceUsd": "20.00", "available": True},
            {"variantId": 1003, "title": "L", "priceUsd": "22.50", "available": False},
        ],
    }
    assert [p["title"] for p in body["products"]] == ["Lightning T-shirt", "Sticker", "Mug"]

    etag = response["ETag"]
    again = client.get(f"/api/shopify/{store.slug}/catalog", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""

    fake_shopify.products[1]["variants"][0]["price"] = "3.00"
    sync_catalog(store)
    changed = client.get(f"/api/shopify/{store.slug}/catalog", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert json.loads(changed.content)["products"][1]["variants"][0]["priceUsd"] == "3.00"


def test_catalog_of_an_unknown_or_inactive_store_is_404(client, store, local_cache):
    assert client.get("/api/shopify/nope/catalog").status_code == 404
    store.active = False
    store.save()
    response = client.get(f"/api/shopify/{store.slug}/catalog")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
