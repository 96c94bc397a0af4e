"""The rules of L402: offers and challenges, checking credentials against a request,
paywalled content, proxies and their endpoints, one-time request keys, stats."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from urllib.parse import unquote

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.text import slugify

from agents import services as agents_services
from checkout.models import Merchant
from checkout.rates import RateUnavailable, get_rate
from config.money import MAX_SATS
from config.problems import Problem
from config.ssrf import UnsafeTarget, check_url
from lightning import services as lightning
from lightning.backends.base import NodeError
from lightning.models import Invoice
from wallets import services as wallets
from webhooks.services import emit, isoformat

from . import macaroons, paths
from .forwarding import seal
from .macaroons import CredentialError, RequestScope, Token
from .models import L402Challenge, OneTimeKey, PaidContent, Proxy, ProxyEndpoint

log = logging.getLogger(__name__)
# lightning.Invoice.purpose of the invoices challenges and one-time keys sell.
PURPOSE = "l402"

IDEMPOTENCY_WINDOW = timedelta(seconds=60)
ONE_TIME_KEY_PREFIX = "otk_"
PROXY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_BUNDLE = 50


@dataclass
class Offer:
    """What a 402 sells: the price, who is paid, and the caveats of the token it unlocks."""

    kind: str
    resource: str
    price_sats: int
    caveats: list[tuple[str, str]]
    merchant: Merchant | None = None
    description: str = ""
    proxy: Proxy | None = None
    scope: RequestScope = field(default_factory=RequestScope)

    def __post_init__(self):
        check_sellable(self.price_sats, self.resource)


def check_sellable(price_sats: int, what: str) -> None:
    """A stored price the gateway cannot sell (saved before prices were bounded, or
    written around the API) refuses the sale with a 503 instead of failing on the node or
    the database."""
    if not 1 <= price_sats <= MAX_SATS:
        raise Problem(
            503,
            "price_out_of_range",
            f"{what} is priced at {price_sats} sats, outside 1..{MAX_SATS}: "
            "its merchant must correct the price",
        )


# --- challenges -------------------------------------------------------------------------


def issue_challenge(offer: Offer, idempotency_key: str | None = None) -> L402Challenge:
    """An invoice for the offer and the token its preimage unlocks.

    The node is asked first; the invoice and the challenge are then written in one short
    transaction. With an `idempotency_key`, that transaction locks the merchant and looks
    for a challenge made with the key in the last minute: if a concurrent request made one,
    nothing is written and that one is returned."""
    caveats = []
    if offer.merchant is not None:
        caveats.append((macaroons.MERCHANT, offer.merchant.public_id))
    caveats += offer.caveats
    caveats.append((macaroons.AMOUNT, str(offer.price_sats)))
    caveats.append((macaroons.EXPIRES, str(int(time.time()) + settings.L402_TOKEN_TTL_SECONDS)))

    def record(invoice):
        if idempotency_key:
            Merchant.objects.select_for_update().filter(pk=offer.merchant.pk).first()
            earlier = _challenge_with_key(offer.merchant, idempotency_key)
            if earlier is not None:
                raise _MadeMeanwhile(earlier)
        wallets.follow_invoice(invoice, offer.merchant)
        return L402Challenge.objects.create(
            merchant=offer.merchant,
            invoice=invoice,
            kind=offer.kind,
            resource=offer.resource[:500],
            proxy=offer.proxy,
            price_sats=offer.price_sats,
            description=offer.description[:640],
            macaroon=macaroons.mint(invoice.payment_hash, caveats),
            idempotency_key=idempotency_key,
        )

    try:
        return lightning.create_invoice(
            offer.price_sats * 1000,
            memo=(offer.description or offer.resource)[:640],
            expiry_seconds=settings.L402_INVOICE_EXPIRY_SECONDS,
            purpose=PURPOSE,
            then=record,
        )
    except _MadeMeanwhile as made:
        return made.challenge
    except NodeError as exc:
        raise Problem(503, "node_unavailable", f"the Lightning node did not answer: {exc}") from exc


class _MadeMeanwhile(Exception):
    """A concurrent request with the same idempotency key made its challenge first (raised
    to roll back this request's invoice)."""

    def __init__(self, challenge: L402Challenge):
        self.challenge = challenge


def _challenge_with_key(merchant: Merchant, idempotency_key: str) -> L402Challenge | None:
    return (
        L402Challenge.objects.select_related("invoice")
        .filter(
            merchant=merchant,
            idempotency_key=idempotency_key,
            created_at__gte=timezone.now() - IDEMPOTENCY_WINDOW,
        )
        .order_by("-created_at")
        .first()
    )


def create_merchant_challenge(
    merchant: Merchant,
    resource: str,
    price_sats: int,
    description: str = "",
    idempotency_key: str | None = None,
) -> L402Challenge:
    """A challenge for a merchant's own resource; the merchant's server checks the
    credential with `verify_merchant_credential`. A repeated idempotency key within a
    minute returns the first challenge."""
    offer = Offer(
        kind=L402Challenge.Kind.RESOURCE,
        resource=resource,
        price_sats=price_sats,
        caveats=[(macaroons.RESOURCE, resource)],
        merchant=merchant,
        description=description,
    )
    earlier = _challenge_with_key(merchant, idempotency_key) if idempotency_key else None
    if earlier is None:
        # No lock is held while the node is asked; issue_challenge checks again under the
        # merchant's lock before it writes, so two retries cannot both make a challenge.
        earlier = issue_challenge(offer, idempotency_key=idempotency_key)
    if (earlier.resource, earlier.price_sats, earlier.description) != (
        resource,
        price_sats,
        description,
    ):
        raise Problem(
            409,
            "idempotency_key_reused",
            "this idempotency key was used in the last minute for a different challenge",
        )
    return earlier


def payment_challenge_string(challenge: L402Challenge) -> str:
    """The same offer as a `Payment` auth-scheme challenge (MPP, legacy profile)."""
    return (
        f'Payment realm="{_realm()}", method="lightning", invoice="{challenge.invoice.bolt11}", '
        f'amount="{challenge.price_sats}", currency="sat"'
    )


def _realm() -> str:
    return re.sub(r"^https?://", "", settings.PUBLIC_BASE_URL)


def list_challenges(merchant: Merchant, status: str | None):
    challenges = (
        L402Challenge.objects.filter(merchant=merchant)
        .select_related("invoice", "proxy")
        .order_by("-created_at", "-pk")
    )
    now = timezone.now()
    if status == L402Challenge.Status.PAID:
        challenges = challenges.filter(invoice__state=Invoice.State.PAID)
    elif status == L402Challenge.Status.PENDING:
        challenges = challenges.filter(
            invoice__state=Invoice.State.OPEN, invoice__expires_at__gt=now
        )
    elif status == L402Challenge.Status.EXPIRED:
        challenges = challenges.exclude(invoice__state=Invoice.State.PAID).exclude(
            invoice__state=Invoice.State.OPEN, invoice__expires_at__gt=now
        )
    return challenges


# --- credentials ------------------------------------------------------------------------


def authorize(authorization: str, scope: RequestScope) -> Token | None:
    """The verified token of an `Authorization` header, checked against the request.
    None when the request carries no L402 credential (it should be offered a challenge).
    Raises CredentialError (401 bad or foreign, 402 expired)."""
    if not authorization:
        return None
    parsed = macaroons.parse_authorization(authorization)
    if parsed is None:
        return None
    token = macaroons.verify(*parsed)
    macaroons.check_scope(token, scope)
    return token


@dataclass(frozen=True)
class Verification:
    valid: bool
    resource: str | None = None
    merchant_id: str | None = None
    amount_sats: int | None = None
    payment_hash: str | None = None
    error: str | None = None


def verify_merchant_credential(merchant: Merchant, macaroon: str, preimage: str) -> Verification:
    """For a merchant's server that sells its own resources through challenges: is this
    macaroon + preimage a paid, unexpired token of this merchant? Every caveat counts,
    also those its holder added (an earlier expiry, a second resource)."""
    try:
        token = macaroons.verify(macaroon, preimage)
    except CredentialError as exc:
        return Verification(valid=False, error=str(exc))
    facts = dict(
        resource=token.first(macaroons.RESOURCE)
        or token.first(macaroons.CONTENT)
        or token.first(macaroons.PROXY),
        merchant_id=token.first(macaroons.MERCHANT),
        amount_sats=token.amount_sats,
        payment_hash=token.payment_hash,
    )
    try:
        macaroons.check_without_request(token, merchant.public_id)
    except CredentialError as exc:
        return Verification(valid=False, error=str(exc), **facts)
    return Verification(valid=True, **facts)


# --- content ----------------------------------------------------------------------------


def published_content():
    return PaidContent.objects.filter(is_published=True).select_related("merchant")


def get_content(slug: str) -> PaidContent:
    item = published_content().filter(slug=slug).first()
    if item is None:
        raise Problem(404, "not_found", f"there is no published content {slug!r}")
    return item


def content_offer(item: PaidContent) -> Offer:
    return Offer(
        kind=L402Challenge.Kind.CONTENT,
        resource=f"content/{item.slug}",
        price_sats=item.price_sats,
        caveats=[(macaroons.CONTENT, item.slug)],
        merchant=item.merchant,
        description=item.title,
        scope=RequestScope(merchant=item.merchant.public_id, content=item.slug),
    )


def bundle_items(slugs: list[str]) -> list[PaidContent]:
    unique = list(dict.fromkeys(slugs))
    found = {item.slug: item for item in published_content().filter(slug__in=unique)}
    missing = [slug for slug in unique if slug not in found]
    if missing:
        raise Problem(
            404, "not_found", f"there is no published content {', '.join(map(repr, missing))}"
        )
    items = [found[slug] for slug in unique]
    if len({item.merchant_id for item in items}) > 1:
        raise Problem(
            400,
            "validation_error",
            "a bundle's items must all come from one merchant",
            {"slugs": ["Items from different merchants cannot be bundled."]},
        )
    return items


def bundle_offer(items: list[PaidContent]) -> Offer:
    slugs = ",".join(item.slug for item in items)
    for item in items:
        check_sellable(item.price_sats, f"content/{item.slug}")
    price = sum(item.price_sats for item in items)
    if price > MAX_SATS:
        raise Problem(
            400,
            "validation_error",
            f"these items cost {price} sats together, more than {MAX_SATS}",
            {"slugs": [f"Together these items cost more than {MAX_SATS} sats."]},
        )
    return Offer(
        kind=L402Challenge.Kind.BUNDLE,
        resource=f"bundle/{slugs}",
        price_sats=price,
        caveats=[(macaroons.CONTENT, slugs)],
        merchant=items[0].merchant,
        description=f"Bundle of {len(items)} items",
    )


def authorize_bundle(
    authorization: str, items: list[PaidContent], method: str, path: str
) -> Token | None:
    """A token that opens every item of the bundle."""
    token = None
    for item in items:
        scope = content_offer(item).scope
        scope.method, scope.path = method, path
        token = authorize(authorization, scope)
        if token is None:
            return None
    return token


def create_content(merchant: Merchant, **fields) -> PaidContent:
    try:
        with transaction.atomic():
            return PaidContent.objects.create(merchant=merchant, **fields)
    except IntegrityError:
        raise Problem(
            409,
            "slug_taken",
            f"the slug {fields['slug']!r} is taken; choose another",
            {"slug": ["This slug is taken."]},
        ) from None


# --- proxies ----------------------------------------------------------------------------


def vet_target(url: str) -> None:
    """Raise UnsafeTarget unless the proxy may send requests to this URL."""
    check_url(url, allow_private=settings.L402_PROXY_ALLOW_PRIVATE_TARGETS)


def new_proxy_id(name: str) -> str:
    base = slugify(name)[:60].strip("-") or "proxy"
    return f"{base}-{secrets.token_hex(3)}"


def create_proxy(merchant: Merchant, auth_value: str = "", **fields) -> Proxy:
    _vet_or_400(fields["target_base_url"])
    return Proxy.objects.create(
        merchant=merchant,
        proxy_id=new_proxy_id(fields["name"]),
        auth_value_encrypted=seal(auth_value) if auth_value else "",
        **fields,
    )


def update_proxy(proxy: Proxy, auth_value: str | None = None, **fields) -> Proxy:
    """Write only the fields given: a change made meanwhile by another request (an
    unpublish, another edit) to any other field stays."""
    if "target_base_url" in fields:
        _vet_or_400(fields["target_base_url"])
    for name, value in fields.items():
        setattr(proxy, name, value)
    changed = [*fields, "updated_at"]
    if auth_value is not None:
        proxy.auth_value_encrypted = seal(auth_value) if auth_value else ""
        changed.append("auth_value_encrypted")
    proxy.save(update_fields=changed)
    return proxy


def _vet_or_400(url: str) -> None:
    try:
        vet_target(url)
    except UnsafeTarget as exc:
        raise Problem(
            400,
            "validation_error",
            f"targetBaseUrl: {exc}",
            {"targetBaseUrl": [str(exc)]},
        ) from None


def unpublish_proxy(proxy: Proxy, reason: str) -> bool:
    """Retire the proxy for good. Returns whether it was already retired."""
    changed = Proxy.objects.filter(pk=proxy.pk, retired_at__isnull=True).update(
        retired_at=timezone.now(),
        retired_reason=reason[:500],
        is_active=False,
        manifest_publicly_listed=False,
        updated_at=timezone.now(),
    )
    proxy.refresh_from_db()
    return not changed


def save_endpoint(proxy: Proxy, endpoint_id: str, **fields) -> tuple[ProxyEndpoint, bool]:
    """Price one route (create, or update the endpoint with this id)."""
    clash = (
        ProxyEndpoint.objects.filter(
            proxy=proxy, http_method=fields["http_method"], path__iexact=fields["path"]
        )
        .exclude(endpoint_id=endpoint_id)
        .first()
    )
    if clash is not None:
        raise Problem(
            409,
            "endpoint_exists",
            f"{fields['http_method']} {fields['path']} is already priced by {clash.endpoint_id!r}",
        )
    return ProxyEndpoint.objects.update_or_create(
        proxy=proxy, endpoint_id=endpoint_id, defaults=fields
    )


def update_manifest_settings(proxy: Proxy, **fields) -> Proxy:
    return update_proxy(proxy, **fields)


@dataclass(frozen=True)
class Route:
    """Where a proxied request goes and what it costs."""

    proxy: Proxy
    method: str
    path: str  # upstream path below targetBaseUrl, starting with "/"
    endpoint: ProxyEndpoint | None

    @property
    def price_sats(self) -> int:
        return self.endpoint.base_price_sats if self.endpoint else self.proxy.default_price_sats

    @property
    def endpoint_caveat(self) -> str | None:
        return f"{self.endpoint.http_method} {self.endpoint.path}" if self.endpoint else None


def get_proxy_for_request(proxy_id: str) -> Proxy:
    try:
        proxy = Proxy.objects.select_related("merchant").get(proxy_id=proxy_id)
    except Proxy.DoesNotExist:
        if OneTimeKey.objects.filter(proxy__isnull=True, proxy_public_id=proxy_id).exists():
            raise Problem(
                410,
                "proxy_deleted",
                f"the proxy {proxy_id} was deleted by its merchant: one-time keys bought for "
                "it can no longer be used; their payments stay on the merchant's books, so "
                "ask the merchant for a refund",
            ) from None
        raise Problem(404, "not_found", f"there is no proxy {proxy_id!r}") from None
    if proxy.retired_at is not None:
        raise Problem(410, "proxy_retired", f"the proxy {proxy_id} was retired")
    if not proxy.is_active:
        raise Problem(503, "proxy_inactive", f"the proxy {proxy_id} is paused by its owner")
    return proxy


def route(proxy: Proxy, method: str, path: str) -> Route:
    """Refuse what the proxy does not allow (before any invoice is made) and find the
    priced endpoint, if any. Everything is decided on the normalised path (l402.paths),
    and that path is the one forwarded."""
    try:
        path = paths.normalise("/" + path)
    except paths.InvalidPath as exc:
        raise Problem(400, "invalid_path", str(exc)) from None
    key = path.lower()
    allowed_methods = [m.upper() for m in proxy.allowed_methods] or list(PROXY_METHODS)
    if method not in allowed_methods:
        raise Problem(
            405,
            "method_not_allowed",
            f"{method} is not allowed on this proxy",
            headers={"Allow": ", ".join(allowed_methods)},
        )
    if proxy.allowed_paths and not any(paths.matches(p, key) for p in proxy.allowed_paths):
        raise Problem(403, "path_not_allowed", f"{path} is not among this proxy's allowed paths")
    if any(paths.matches(p, key) for p in proxy.blocked_paths):
        raise Problem(403, "path_not_allowed", f"{path} is blocked on this proxy")
    endpoint = next(
        (
            e
            for e in proxy.endpoints.all()
            if e.http_method == method and paths.matches(e.path, key)
        ),
        None,
    )
    return Route(proxy=proxy, method=method, path=path, endpoint=endpoint)


def proxy_offer(target: Route, body: bytes) -> Offer:
    proxy = target.proxy
    caveats = [(macaroons.PROXY, proxy.proxy_id)]
    if target.endpoint_caveat:
        caveats.append((macaroons.ENDPOINT, target.endpoint_caveat))
    return Offer(
        kind=L402Challenge.Kind.PROXY,
        resource=f"proxy/{proxy.proxy_id}"
        + (f" {target.endpoint_caveat}" if target.endpoint else ""),
        price_sats=target.price_sats,
        caveats=caveats,
        merchant=proxy.merchant,
        description=(target.endpoint.summary if target.endpoint else "") or proxy.name,
        proxy=proxy,
        scope=RequestScope(
            merchant=proxy.merchant.public_id,
            proxy=proxy.proxy_id,
            endpoint=target.endpoint_caveat,
            method=target.method,
            path=target.path,
            body=body,
        ),
    )


# --- one-time request keys ---------------------------------------------------------------


@dataclass(frozen=True)
class SoldKey:
    key: OneTimeKey
    raw: str


def sell_one_time_key(proxy_id: str, method: str, path: str, body: str) -> SoldKey:
    """An invoice and a key that, once the invoice is paid, runs exactly this request once."""
    proxy = get_proxy_for_request(proxy_id)
    path, _, query = path.partition("?")
    try:
        path = unquote(path, errors="strict")  # as a server decodes the request's path
    except UnicodeDecodeError:
        raise Problem(400, "invalid_path", "the path is not percent-encoded UTF-8") from None
    target = route(proxy, method.upper(), path)
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
            body_sha256=hashlib.sha256(body.encode()).hexdigest(),
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


# --- events -------------------------------------------------------------------------------


def announce_paid(invoice: Invoice) -> None:
    """Write `l402.paid` to the merchant's webhook outbox when the paid invoice belongs to
    a challenge or a one-time key (inside the transaction of the payment)."""
    challenge = L402Challenge.objects.select_related("merchant", "proxy").filter(invoice=invoice)
    challenge = challenge.first()
    if challenge is not None and challenge.merchant is not None:
        emit(
            challenge.merchant,
            "l402.paid",
            {
                "challengeId": challenge.public_id,
                "kind": challenge.kind,
                "resource": challenge.resource,
                "proxyId": challenge.proxy.proxy_id if challenge.proxy else None,
                "amountSats": challenge.price_sats,
                "paymentHash": invoice.payment_hash,
                "paidAt": isoformat(invoice.paid_at),
            },
            source=f"l402:{challenge.pk}",
        )
        if challenge.proxy is not None:
            _count_for_agent(
                challenge.proxy.proxy_id,
                challenge.proxy.merchant_id,
                challenge.price_sats,
                invoice.payment_hash,
            )
        return
    # The key's own record, not its proxy: the proxy may be deleted by now.
    key = OneTimeKey.objects.select_related("merchant").filter(invoice=invoice).first()
    if key is not None:
        emit(
            key.merchant,
            "l402.paid",
            {
                "challengeId": None,
                "kind": "one_time_key",
                "resource": f"proxy/{key.proxy_public_id} {key.method} {key.path}",
                "proxyId": key.proxy_public_id,
                "amountSats": key.price_sats,
                "paymentHash": invoice.payment_hash,
                "paidAt": isoformat(invoice.paid_at),
            },
            source=f"l402-key:{key.pk}",
        )
        _count_for_agent(key.proxy_public_id, key.merchant_id, key.price_sats, invoice.payment_hash)


def _count_for_agent(proxy_id: str, merchant_id: int, amount_sats: int, payment_hash: str):
    """A paid call through a proxy that an agent of the proxy's merchant sells as a
    capability counts in that agent's stats (requests and revenue)."""
    agents_services.record_l402_payment(
        f"/l402/proxy/{proxy_id}", amount_sats, payment_hash, seller_id=merchant_id
    )


# --- stats --------------------------------------------------------------------------------


def l402_stats(merchant: Merchant) -> dict:
    paid = Q(invoice__state=Invoice.State.PAID)
    challenges = L402Challenge.objects.filter(merchant=merchant)
    totals = challenges.aggregate(
        issued=Count("pk"), paid=Count("pk", filter=paid), revenue=Sum("price_sats", filter=paid)
    )
    by_resource = (
        challenges.values("resource")
        .annotate(
            issued=Count("pk"),
            paid=Count("pk", filter=paid),
            revenue=Sum("price_sats", filter=paid),
        )
        .order_by("-revenue", "resource")
    )
    keys = OneTimeKey.objects.filter(merchant=merchant)  # also those of deleted proxies
    key_totals = keys.aggregate(
        issued=Count("pk"),
        paid=Count("pk", filter=paid),
        spent=Count("pk", filter=Q(spent_at__isnull=False)),
        revenue=Sum("price_sats", filter=paid),
    )
    proxies = Proxy.objects.filter(merchant=merchant).annotate(
        issued=Count("challenges", distinct=True),
        paid=Count("challenges", filter=Q(challenges__invoice__state="paid"), distinct=True),
    )
    challenge_revenue = dict(
        challenges.filter(paid, proxy__isnull=False)
        .values_list("proxy")
        .annotate(total=Sum("price_sats"))
    )
    key_revenue = {
        row["proxy"]: row
        for row in keys.values("proxy").annotate(
            sold=Count("pk", filter=paid), revenue=Sum("price_sats", filter=paid)
        )
    }
    by_proxy = []
    for proxy in proxies.order_by("name"):
        keys_row = key_revenue.get(proxy.pk, {})
        by_proxy.append(
            {
                "proxyId": proxy.proxy_id,
                "name": proxy.name,
                "challengesIssued": proxy.issued,
                "challengesPaid": proxy.paid,
                "oneTimeKeysPaid": keys_row.get("sold") or 0,
                "revenueSats": (challenge_revenue.get(proxy.pk) or 0)
                + (keys_row.get("revenue") or 0),
            }
        )
    return {
        "challengesIssued": totals["issued"],
        "challengesPaid": totals["paid"],
        "revenueSats": (totals["revenue"] or 0) + (key_totals["revenue"] or 0),
        "byResource": [
            {
                "resource": row["resource"],
                "challengesIssued": row["issued"],
                "challengesPaid": row["paid"],
                "revenueSats": row["revenue"] or 0,
            }
            for row in by_resource
        ],
        "byProxy": by_proxy,
        "oneTimeKeys": {
            "issued": key_totals["issued"],
            "paid": key_totals["paid"],
            "spent": key_totals["spent"],
            "revenueSats": key_totals["revenue"] or 0,
        },
    }


# --- MCP version check ----------------------------------------------------------------------


# A version like 1.2.3 (also v1.2, 1.2.3-beta.1+build): the OpenAPI document says the same.
VERSION_PATTERN = r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:[-+][0-9A-Za-z.+-]*)?"


def _version_tuple(version: str) -> tuple[int, ...]:
    match = re.fullmatch(VERSION_PATTERN, version) if len(version) <= 64 else None
    if not match:
        raise ValueError(version)
    return tuple(int(part or 0) for part in match.groups())


def mcp_version_check(current: str | None) -> dict:
    latest = settings.L402_MCP_LATEST_VERSION
    minimum = settings.L402_MCP_MIN_VERSION
    body = {
        "latestVersion": latest,
        "updateRecommended": False,
        "updateRequired": False,
        "message": f"The latest version is {latest}.",
        "releaseNotes": settings.L402_MCP_RELEASE_NOTES,
    }
    if not current:
        return body
    try:
        mine = _version_tuple(current)
    except ValueError:
        raise Problem(
            400,
            "validation_error",
            "currentVersion must look like 1.2.3",
            {"currentVersion": ["Must be a version like 1.2.3."]},
        ) from None
    body["updateRequired"] = mine < _version_tuple(minimum)
    body["updateRecommended"] = mine < _version_tuple(latest)
    if body["updateRequired"]:
        body["message"] = f"Version {current} is no longer supported; update to {latest}."
    elif body["updateRecommended"]:
        body["message"] = f"Version {latest} is available (you have {current})."
    else:
        body["message"] = f"Version {current} is up to date."
    return body
