"""A small fixed-window rate limiter on Django's cache, for endpoints anyone may call.

    from config.ratelimit import enforce_rate

    enforce_rate(request, "checkout-public", limit=30, period=60)  # raises a 429 Problem

or, for a key that is not a client address, `check_rate(key, scope, limit, period)`, which
answers how many seconds to wait (0 when the call is allowed).

The counters live in the `default` cache, which must be shared by every web worker process
(a file or database cache, or Redis): a per-process cache would give each gunicorn worker
its own budget. With Redis the count is exact; with the file or database cache, `incr` is a
read and a write, so a burst of simultaneous calls may be under-counted by a few.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache

from .problems import Problem


def check_rate(key: str, scope: str, limit: int, period: int) -> int:
    """Count one call of `key` in `scope`; at most `limit` calls per `period` seconds.

    Returns 0 when this call is within the limit, else the seconds until the window resets.
    """
    now = time.time()
    window = int(now // period)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]  # any key is a safe cache key
    cache_key = f"ratelimit:{scope}:{digest}:{window}"
    cache.add(cache_key, 0, timeout=period + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # the entry expired between add and incr: a new window began
        cache.set(cache_key, 1, timeout=period + 1)
        count = 1
    if count <= limit:
        return 0
    return max(1, math.ceil((window + 1) * period - now))


def client_address(request) -> str:
    """The caller's IP address: REMOTE_ADDR, or the header a trusted reverse proxy sets
    (CLIENT_IP_HEADER, e.g. `X-Real-IP`; never a header clients can set themselves)."""
    header = getattr(settings, "CLIENT_IP_HEADER", "")
    if header:
        meta_name = "HTTP_" + header.upper().replace("-", "_")
        value = request.META.get(meta_name, "").split(",")[0].strip()
        if value:
            return value
    return request.META.get("REMOTE_ADDR", "")


def enforce_rate(request, scope: str, limit: int, period: int) -> None:
    """Raise a 429 problem (with Retry-After) when the caller's address is over the limit."""
    retry_after = check_rate(client_address(request), scope, limit, period)
    if retry_after:
        raise Problem(
            429,
            "rate_limited",
            f"Too many requests: at most {limit} every {period} seconds. "
            f"Try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
