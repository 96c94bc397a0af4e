"""One-time request keys: a key sold with an invoice that, once paid, runs exactly one
proxied request (method, path, query and body fixed when it is bought), exactly once."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import unquote

from django.conf import settings
from django.utils import timezone

from checkout.rates import RateUnavailable, get_rate
from config.problems import Problem
from lightning import services as lightning
from lightning.backends.base import NodeError
from lightning.models import Invoice
from wallets import services as wallets

from ..models import OneTimeKey, Proxy
from .offers import PURPOSE, check_sellable
from .proxies import Route, get_proxy_for_request, route

log = logging.getLogger(__name__)
ONE_TIME_KEY_PREFIX = "otk_"
# Where a GraphQL proxy's API answers, below the proxy and below its targetBaseUrl.
GRAPHQL_PATH = "/graphql"


@dataclass(frozen=True)
class SoldKey:
    key: OneTimeKey
    raw: str


def sell_one_time_key(proxy_id: str, method: str, path: str, body: bytes) -> SoldKey:
    """An invoice and a key that, once the invoice is paid, runs exactly this request once."""
    proxy = get_proxy_for_request(proxy_id)
    path, _, query = path.partition("?")
    try:
        path = unquote(path, errors="strict")  # as a server decodes the request's path
    except UnicodeDecodeError:
        raise Problem(400, "invalid_path", "the path is not percent-encoded UTF-8") from None
    return _sell(proxy, route(proxy, method.upper(), path), query, body)


def sell_graphql_key(proxy: Proxy, body: bytes) -> SoldKey:
    """Blocktap's invoice API on a GraphQL proxy: `body` is the GraphQL request ({query,
    operation, variables}), given a light check here; the key runs `POST /graphql` with
    exactly these bytes, once."""
    _check_graphql_request(body)
    return _sell(proxy, route(proxy, "POST", GRAPHQL_PATH), "", body)


def _check_graphql_request(body: bytes) -> None:
    def refuse(field: str, message: str):
        raise Problem(400, "validation_error", f"{field}: {message}", {field: [message]})

    try:
        request = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested beyond Python's stack
        raise Problem(
            400,
            "malformed_json",
            "the body must be a JSON object: {query, operation, variables}",
        ) from None
    if not isinstance(request, dict):
        refuse("body", "Must be a JSON object: {query, operation, variables}.")
    query = request.get("query")
    if not isinstance(query, str) or "{" not in query:
        refuse("query", "Required: the GraphQL query, a string with a selection set ({...}).")
    for name in ("operation", "operationName"):
        operation = request.get(name)
        if operation is None:
            continue
        if not isinstance(operation, str):
            refuse(name, "Must be a string: the name of the query in `query` to run.")
        if operation and not re.search(rf"\b{re.escape(operation)}\b", query):
            refuse(name, f"The query has no operation named {operation!r}.")
    variables = request.get("variables")
    if variables is not None and not isinstance(variables, dict):
        refuse("variables", "Must be an object mapping variable names to values.")


def _sell(proxy: Proxy, target: Route, query: str, body: bytes) -> SoldKey:
    check_sellable(target.price_sats, f"{target.method} {target.path}")
    try:
        rate, _ = get_rate("USD")
        price_usd = (Decimal(target.price_sats) * rate / Decimal(10**8)).quantize(
            Decimal("0.00000001")
        )
    except RateUnavailable as exc:
        log.warning("one-time key sold without a USD price: %s", exc)
        price_usd = None
    raw = ONE_TIME_KEY_PREFIX + secrets.token_hex(32)

    def record(invoice):
        wallets.follow_invoice(invoice, proxy.merchant)
        return OneTimeKey.objects.create(
            merchant=proxy.merchant,
            proxy=proxy,
            proxy_public_id=proxy.proxy_id,
            key_hash=hashlib.sha256(raw.encode()).hexdigest(),
            invoice=invoice,
            method=target.method,
            path=target.path + (f"?{query}" if query else ""),
            body_sha256=hashlib.sha256(body).hexdigest(),
            price_sats=target.price_sats,
            price_usd=price_usd,
        )

    try:
        key = lightning.create_invoice(
            target.price_sats * 1000,
            memo=f"{target.method} {target.path} via {proxy.name}"[:640],
            expiry_seconds=settings.L402_INVOICE_EXPIRY_SECONDS,
            purpose=PURPOSE,
            then=record,
        )
    except NodeError as exc:
        raise Problem(503, "node_unavailable", f"the Lightning node did not answer: {exc}") from exc
    return SoldKey(key=key, raw=raw)


def spend_one_time_key(raw: str, target: Route, query: str, body: bytes) -> OneTimeKey:
    """Check the key against the request and spend it. Exactly one concurrent use wins:
    the spend is a conditional UPDATE."""
    key = (
        OneTimeKey.objects.select_related("invoice")
        .filter(key_hash=hashlib.sha256(raw.encode()).hexdigest())
        .first()
    )
    if key is None:
        raise Problem(401, "unknown_key", "this one-time key is unknown")
    if key.proxy_id != target.proxy.pk:
        raise Problem(401, "key_out_of_scope", "this one-time key was bought for another proxy")
    if key.spent_at is not None:
        raise Problem(401, "key_spent", "this one-time key was already used; buy a new one")
    request_path = target.path + (f"?{query}" if query else "")
    if (key.method, key.path) != (target.method, request_path):
        raise Problem(
            400,
            "request_mismatch",
            f"this key pays for {key.method} {key.path}, not {target.method} {request_path}",
        )
    if not secrets.compare_digest(key.body_sha256, hashlib.sha256(body).hexdigest()):
        raise Problem(
            400,
            "body_mismatch",
            "the request body differs from the one this key was bought for",
        )
    invoice = lightning.refresh_from_node(key.invoice)
    if invoice.state != Invoice.State.PAID:
        detail = (
            "the invoice for this key is not paid yet"
            if invoice.state == Invoice.State.OPEN
            else f"the invoice for this key is {invoice.state}; buy a new key"
        )
        raise Problem(402, "payment_required", detail)
    if not OneTimeKey.objects.filter(pk=key.pk, spent_at__isnull=True).update(
        spent_at=timezone.now()
    ):
        raise Problem(401, "key_spent", "this one-time key was already used; buy a new one")
    return key
