"""A fake Shopify Admin GraphQL API on loopback, and fixtures for the Shopify bridge tests.

It answers the operations the bridge sends with Shopify's documented shapes (connections
with `nodes` and `pageInfo`, `extensions.cost.throttleStatus`, `userErrors`), keeps a
leaky-bucket cost budget, and can be told to be down, fail with 500, throttle (HTTP 429
with Retry-After, or GraphQL THROTTLED errors), lose the answer to an orderCreate it
carried out, or refuse orders for lack of stock.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from checkout.services import create_merchant
from shopify_bridge.models import ShopifyStore

TOKEN = "shpat_test_0123456789abcdef"
WEBHOOK_SECRET = "shopify-webhook-secret-for-tests"
SHOP = "zap-test.myshopify.com"


def cursor(index: int) -> str:
    return base64.b64encode(f"cursor:{index}".encode()).decode()


def uncursor(value: str | None) -> int:
    return int(base64.b64decode(value).decode().split(":")[1]) if value else -1


class FakeShopify:
    def __init__(self):
        self.products: list[dict] = []
        self.inventory: dict[int, int] = {}
        self.orders: list[dict] = []
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        # failure switches
        self.down = False  # drop connections without answering
        self.fail_status: int | None = None  # answer every request with this HTTP status
        self.throttle_429 = 0  # next N requests: 429 with Retry-After
        self.retry_after = "2"
        self.throttle_graphql = 0  # next N requests: THROTTLED errors
        self.lose_create_answers = 0  # next N orderCreates: do it, then answer 500
        # the cost bucket
        self.maximum = 2000.0
        self.available = 2000.0
        self.restore_rate = 100.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url_template(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}/{{shop}}/admin/api/{{version}}/graphql.json"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # --- catalog ------------------------------------------------------------------------

    def add_product(self, product_id, title, variants, description="", image=None):
        """variants: [(variant_id, title, "12.50", available, inventory)]"""
        self.products.append(
            {
                "id": f"gid://shopify/Product/{product_id}",
                "title": title,
                "description": description,
                "featuredMedia": {"preview": {"image": {"url": image}}} if image else None,
                "variants": [
                    {
                        "id": f"gid://shopify/ProductVariant/{vid}",
                        "title": vtitle,
                        "price": price,
                        "availableForSale": available,
                    }
                    for vid, vtitle, price, available, _ in variants
                ],
            }
        )
        for vid, _, _, _, stock in variants:
            self.inventory[vid] = stock

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def let_time_pass(self, seconds: float):
        """What the client's sleep does in tests: the bucket refills, no real waiting."""
        with self.lock:
            self.available = min(self.maximum, self.available + seconds * self.restore_rate)

    # --- the server ---------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if fake.down:
                    self.close_connection = True
                    return  # no answer at all: the client sees the connection drop
                status, body, headers = fake.answer(self.path, self.headers, raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def answer(self, path, headers, raw):
        match = re.fullmatch(r"/([^/]+)/admin/api/(\d{4}-\d\d)/graphql\.json", path)
        if not match or match.group(1) != SHOP:
            return 404, {"errors": "Not Found"}, {}
        if headers.get("X-Shopify-Access-Token") != TOKEN:
            return 401, {"errors": "[API] Invalid API key or access token"}, {}
        request = json.loads(raw)
        query, variables = request["query"], request.get("variables") or {}
        name = re.search(r"(?:query|mutation)\s+(\w+)", query).group(1)
        with self.lock:
            self.calls.append((name, variables))
            if self.fail_status:
                return self.fail_status, {"errors": "Internal Server Error"}, {}
            if self.throttle_429:
                self.throttle_429 -= 1
                headers = {"Retry-After": self.retry_after}
                return 429, {"errors": "Exceeded 2 calls per second"}, headers
            cost = self._cost(name, variables)
            if self.throttle_graphql or self.available < cost:
                self.throttle_graphql = max(0, self.throttle_graphql - 1)
                return 200, self._throttled(cost), {}
            self.available -= cost
            if name == "CreateZapgateOrder" and self.lose_create_answers:
                self.lose_create_answers -= 1
                self._create_order(variables)
                return 500, {"errors": "Internal Server Error"}, {}
            data = getattr(self, f"_op_{name}")(variables)
            return 200, {"data": data, "extensions": self._extensions(cost, cost)}, {}

    def _cost(self, name, variables):
        if name == "CatalogProducts":
            return 2 + variables["first"] * (1 + variables["variants"]) // 10
        return 10 if name == "CreateZapgateOrder" else 2

    def _extensions(self, requested, actual):
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": {
                    "maximumAvailable": self.maximum,
                    "currentlyAvailable": self.available,
                    "restoreRate": self.restore_rate,
                },
            }
        }

    def _throttled(self, cost):
        return {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    },
                }
            ],
            "extensions": self._extensions(cost, None),
        }

    # --- operations -----------------------------------------------------------------------

    def _op_CatalogCount(self, variables):
        return {"productsCount": {"count": len(self.products), "precision": "EXACT"}}

    def _op_CatalogProducts(self, variables):
        start = uncursor(variables.get("after")) + 1
        page = self.products[start : start + variables["first"]]
        nodes = []
        for product in page:
            variants = product["variants"][: variables["variants"]]
            nodes.append(
                {
                    **{k: v for k, v in product.items() if k != "variants"},
                    "variants": {
                        "pageInfo": {
                            "hasNextPage": len(product["variants"]) > len(variants),
                            "endCursor": cursor(len(variants) - 1) if variants else None,
                        },
                        "nodes": variants,
                    },
                }
            )
        end = start + len(page) - 1
        return {
            "products": {
                "pageInfo": {
                    "hasNextPage": end + 1 < len(self.products),
                    "endCursor": cursor(end) if page else None,
                },
                "nodes": nodes,
            }
        }

    def _op_CatalogVariants(self, variables):
        product = next(p for p in self.products if p["id"] == variables["id"])
        start = uncursor(variables.get("after")) + 1
        page = product["variants"][start : start + variables["first"]]
        end = start + len(page) - 1
        return {
            "product": {
                "variants": {
                    "pageInfo": {
                        "hasNextPage": end + 1 < len(product["variants"]),
                        "endCursor": cursor(end),
                    },
                    "nodes": page,
                }
            }
        }

    def _op_FindZapgateOrder(self, variables):
        tag = re.fullmatch(r"tag:'([^']+)'", variables["query"]).group(1)
        found = [o for o in self.orders if tag in o["tags"]][:1]
        return {"orders": {"nodes": [{"id": o["id"], "name": o["name"]} for o in found]}}

    def _op_CreateZapgateOrder(self, variables):
        order = variables["order"]
        obey = (variables.get("options") or {}).get("inventoryBehaviour") == (
            "DECREMENT_OBEYING_POLICY"
        )
        errors = []
        for index, line in enumerate(order["lineItems"]):
            vid = int(line["variantId"].rsplit("/", 1)[1])
            if obey and self.inventory.get(vid, 0) < line["quantity"]:
                errors.append(
                    {
                        "field": ["order", "lineItems", str(index), "quantity"],
                        "message": f"Variant {vid} is out of stock.",
                        "code": "INVENTORY_NOT_ENOUGH",
                    }
                )
        if errors:
            return {"orderCreate": {"order": None, "userErrors": errors}}
        created = self._create_order(variables)
        return {
            "orderCreate": {
                "order": {"id": created["id"], "name": created["name"]},
                "userErrors": [],
            }
        }

    def _create_order(self, variables):
        order = variables["order"]
        number = 1001 + len(self.orders)
        created = {
            "id": f"gid://shopify/Order/{5_000_000 + number}",
            "name": f"#{number}",
            "tags": order.get("tags", []),
            "input": order,
        }
        for line in order["lineItems"]:
            vid = int(line["variantId"].rsplit("/", 1)[1])
            self.inventory[vid] = self.inventory.get(vid, 0) - line["quantity"]
        self.orders.append(created)
        return created


def standard_catalog(fake: FakeShopify) -> None:
    fake.add_product(
        101,
        "Lightning T-shirt",
        [
            (1001, "S", "20.00", True, 50),
            (1002, "M", "20.00", True, 50),
            (1003, "L", "22.50", False, 0),
        ],
        description="Soft cotton.",
        image="https://cdn.shopify.com/s/files/shirt.png",
    )
    fake.add_product(102, "Sticker", [(2001, "Default Title", "2.50", True, 3)])
    fake.add_product(103, "Mug", [(3001, "Default Title", "12.00", True, 100)])


@pytest.fixture
def fake_shopify(settings):
    fake = FakeShopify().start()
    settings.SHOPIFY_API_BASE_URL = fake.url_template
    yield fake
    fake.stop()


@pytest.fixture
def local_cache(settings):
    """A private cache per test (rate-limit counters, cached catalogs)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def merchant_and_key(db):
    return create_merchant("Zap Apparel", "owner@zap.example")


@pytest.fixture
def store(merchant_and_key):
    merchant, _ = merchant_and_key
    return ShopifyStore.objects.create(
        merchant=merchant,
        slug="zap-apparel",
        name="Zap Apparel",
        shop_domain=SHOP,
        access_token=TOKEN,
        webhook_secret=WEBHOOK_SECRET,
        domestic_country="US",
        domestic_shipping_usd=Decimal("5.00"),
        domestic_only=True,
        free_shipping_enabled=True,
        free_shipping_threshold_usd=Decimal("50.00"),
    )
