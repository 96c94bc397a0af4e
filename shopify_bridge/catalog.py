"""The local copy of a store's catalog: synced from Shopify, served from here.

Buyers and agents read the catalog often and Shopify's API is metered, so checkouts and
the public catalog use only the copy; a sync replaces it in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from .models import ShopifyProduct, ShopifyStore, ShopifyVariant
from .shopify import ShopifyClient, ShopifyError, numeric_id

PRODUCTS_PER_PAGE = 10
VARIANTS_PER_PRODUCT = 50  # a page of 10 products x 50 variants costs ~520 of Shopify's 1000

PRODUCTS_QUERY = """
query CatalogProducts($first: Int!, $after: String, $variants: Int!) {
  products(first: $first, after: $after, query: "status:active", sortKey: TITLE) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      title
      description
      featuredMedia { preview { image { url } } }
      variants(first: $variants) {
        pageInfo { hasNextPage endCursor }
        nodes { id title price availableForSale }
      }
    }
  }
}
"""

VARIANTS_QUERY = """
query CatalogVariants($id: ID!, $first: Int!, $after: String) {
  product(id: $id) {
    variants(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { id title price availableForSale }
    }
  }
}
"""


COUNT_QUERY = """
query CatalogCount { productsCount(query: "status:active") { count } }
"""


@dataclass
class SyncResult:
    products: int = 0
    variants: int = 0
    pages: int = 0


def sync_catalog(
    store: ShopifyStore,
    progress: Callable[[int, int], None] | None = None,
    client: ShopifyClient | None = None,
) -> SyncResult:
    """Fetch every active product with its variants, then replace the local copy at once.
    `progress(products_so_far, products_in_all)` is called after each page. Raises
    ShopifyError (the copy is left as it was, and the error is recorded on the store)."""
    client = client or ShopifyClient(store)
    result = SyncResult()
    fetched = []
    try:
        total = None
        if progress:
            total = client.execute(COUNT_QUERY, operation="count")["productsCount"]["count"]
            progress(0, total)
        after = None
        while True:
            data = client.execute(
                PRODUCTS_QUERY,
                {"first": PRODUCTS_PER_PAGE, "after": after, "variants": VARIANTS_PER_PRODUCT},
                operation="products",
            )
            page = data["products"]
            for node in page["nodes"]:
                variants = list(node["variants"]["nodes"])
                info = node["variants"]["pageInfo"]
                while info["hasNextPage"]:
                    more = client.execute(
                        VARIANTS_QUERY,
                        {"id": node["id"], "first": 100, "after": info["endCursor"]},
                        operation="variants",
                    )["product"]["variants"]
                    variants.extend(more["nodes"])
                    info = more["pageInfo"]
                fetched.append((node, variants))
            result.pages += 1
            if progress:
                progress(len(fetched), max(total, len(fetched)))
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
    except ShopifyError as exc:
        ShopifyStore.objects.filter(pk=store.pk).update(last_sync_error=str(exc)[:2000])
        raise
    except (KeyError, TypeError, ValueError) as exc:
        message = f"Shopify answered an unexpected shape: {exc!r}"
        ShopifyStore.objects.filter(pk=store.pk).update(last_sync_error=message)
        raise ShopifyError(message) from exc
    _replace_copy(store, fetched, result)
    return result


@transaction.atomic
def _replace_copy(store: ShopifyStore, fetched: list, result: SyncResult) -> None:
    seen_products = []
    seen_variants = []
    for position, (node, variants) in enumerate(fetched):
        media = (node.get("featuredMedia") or {}).get("preview") or {}
        product, _ = ShopifyProduct.objects.update_or_create(
            store=store,
            product_id=numeric_id(node["id"]),
            defaults={
                "title": node["title"][:255],
                "description": node.get("description") or "",
                "image_url": ((media.get("image") or {}).get("url") or "")[:2000],
                "position": position,
            },
        )
        seen_products.append(product.pk)
        for variant_position, variant in enumerate(variants):
            row, _ = ShopifyVariant.objects.update_or_create(
                store=store,
                variant_id=numeric_id(variant["id"]),
                defaults={
                    "product": product,
                    "title": variant["title"][:255],
                    "price_usd": Decimal(str(variant["price"])),
                    "available": bool(variant["availableForSale"]),
                    "position": variant_position,
                },
            )
            seen_variants.append(row.pk)
    ShopifyVariant.objects.filter(store=store).exclude(pk__in=seen_variants).delete()
    ShopifyProduct.objects.filter(store=store).exclude(pk__in=seen_products).delete()
    ShopifyStore.objects.filter(pk=store.pk).update(
        catalog_synced_at=timezone.now(), last_sync_error="", updated_at=timezone.now()
    )
    result.products = len(seen_products)
    result.variants = len(seen_variants)


def money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def shipping_rules(store: ShopifyStore) -> dict:
    return {
        "domesticUsd": money(store.domestic_shipping_usd),
        "domesticCountry": store.domestic_country,
        "domesticOnly": store.domestic_only,
        "freeShippingEnabled": store.free_shipping_enabled,
        "freeShippingThresholdUsd": (
            money(store.free_shipping_threshold_usd)
            if store.free_shipping_threshold_usd is not None
            else None
        ),
    }


def catalog_document(store: ShopifyStore) -> tuple[bytes, str]:
    """The public catalog as JSON bytes and its ETag, cached until the store or its copy
    changes (every sync and every edit moves `updated_at`)."""
    key = f"shopify:catalog:{store.pk}:{store.updated_at.timestamp()}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    products = []
    variants_by_product: dict[int, list] = {}
    for variant in ShopifyVariant.objects.filter(store=store).order_by("position", "id"):
        variants_by_product.setdefault(variant.product_id, []).append(
            {
                "variantId": variant.variant_id,
                "title": variant.title,
                "priceUsd": money(variant.price_usd),
                "available": variant.available,
            }
        )
    for product in ShopifyProduct.objects.filter(store=store):
        products.append(
            {
                "productId": product.product_id,
                "title": product.title,
                "description": product.description,
                "imageUrl": product.image_url or None,
                "variants": variants_by_product.get(product.pk, []),
            }
        )
    body = json.dumps(
        {
            "storeName": store.name,
            "slug": store.slug,
            "shipping": shipping_rules(store),
            "products": products,
        },
        separators=(",", ":"),
    ).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    cache.set(key, (body, etag), timeout=24 * 3600)
    return body, etag
