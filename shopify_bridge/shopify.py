"""A small client for one store's Shopify Admin GraphQL API, that keeps to its rate limits.

Shopify meters GraphQL by query cost: each answer carries `extensions.cost.throttleStatus`
(`currentlyAvailable` points, refilled at `restoreRate` per second). Before a request we
wait until the bucket holds what the previous request of that operation cost; a THROTTLED
error or an HTTP 429 (with Retry-After) makes us wait and send it again. Network errors
and 5xx answers raise ShopifyUnavailable: callers retry later (the outbox, the next sync).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from django.conf import settings

log = logging.getLogger(__name__)

MAX_THROTTLE_WAITS = 8
MAX_WAIT_SECONDS = 60.0


class ShopifyError(Exception):
    """Shopify answered, but not with what we asked for (bad token, GraphQL errors)."""


class ShopifyUnavailable(ShopifyError):
    """Shopify could not be reached, failed (5xx), or kept throttling: try again later."""


class ShopifyClient:
    def __init__(self, store, sleep: Callable[[float], None] = time.sleep):
        self.url = settings.SHOPIFY_API_BASE_URL.format(
            shop=store.shop_domain, version=store.api_version
        )
        self.token = store.access_token
        self.sleep = sleep
        self.available: float | None = None  # points left at the last answer
        self.restore_rate = 50.0
        self.last_cost: dict[str, float] = {}

    def execute(self, query: str, variables: dict | None = None, operation: str = "") -> dict:
        """Run one operation; returns its `data`. Raises ShopifyError / ShopifyUnavailable."""
        for _ in range(MAX_THROTTLE_WAITS):
            self._wait_for_budget(operation)
            status, headers, body = self._post({"query": query, "variables": variables or {}})
            if status == 429:
                self._pause(_retry_after(headers), "429 Too Many Requests")
                continue
            if status >= 500:
                raise ShopifyUnavailable(f"Shopify answered HTTP {status}")
            if status in (401, 403):
                raise ShopifyError(f"Shopify refused the access token (HTTP {status})")
            if status != 200:
                raise ShopifyError(f"Shopify answered HTTP {status}: {body[:200]!r}")
            try:
                payload = json.loads(body)
            except ValueError as exc:
                raise ShopifyUnavailable(f"Shopify answered non-JSON: {exc}") from exc
            self._note_cost(payload, operation)
            errors = payload.get("errors") or []
            if any(_code(e) == "THROTTLED" for e in errors):
                self._pause(self._refill_seconds(operation), "THROTTLED")
                continue
            if errors:
                raise ShopifyError("; ".join(str(e.get("message", e)) for e in errors))
            return payload.get("data") or {}
        raise ShopifyUnavailable(f"Shopify kept throttling {operation or 'the request'}")

    def _post(self, payload: dict) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-Shopify-Access-Token": self.token,
            },
        )
        try:
            with urllib.request.urlopen(
                request, timeout=settings.SHOPIFY_TIMEOUT_SECONDS
            ) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers or {}), exc.read() if exc.fp else b""
        except (OSError, ValueError) as exc:  # refused, reset, timeout, DNS
            raise ShopifyUnavailable(f"Shopify could not be reached: {exc}") from exc

    def _note_cost(self, payload: dict, operation: str) -> None:
        """Remember the bucket's level and what this operation costs."""
        cost = (payload.get("extensions") or {}).get("cost") or {}
        status = cost.get("throttleStatus") or {}
        if "currentlyAvailable" in status:
            self.available = float(status["currentlyAvailable"])
            self.restore_rate = float(status.get("restoreRate") or self.restore_rate)
        if cost.get("requestedQueryCost") is not None:
            self.last_cost[operation] = float(cost["requestedQueryCost"])

    def _refill_seconds(self, operation: str) -> float:
        needed = self.last_cost.get(operation, 0.0) - (self.available or 0.0)
        return max(needed / self.restore_rate, 1.0)

    def _wait_for_budget(self, operation: str) -> None:
        if self.available is None or operation not in self.last_cost:
            return
        if self.available < self.last_cost[operation]:
            self._pause(self._refill_seconds(operation), "query cost budget")

    def _pause(self, seconds: float, why: str) -> None:
        seconds = min(seconds, MAX_WAIT_SECONDS)
        log.info("Shopify rate limit (%s): waiting %.1f s", why, seconds)
        self.sleep(seconds)
        if self.available is not None:  # the bucket refilled while we waited
            self.available += seconds * self.restore_rate


def _code(error: dict) -> str:
    return str((error.get("extensions") or {}).get("code", ""))


def _retry_after(headers: dict) -> float:
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return 2.0


def numeric_id(gid: str) -> int:
    """`gid://shopify/ProductVariant/123` -> 123."""
    return int(str(gid).rsplit("/", 1)[-1])
