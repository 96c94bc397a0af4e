"""Paid reverse proxies: creating, editing and retiring them and their priced endpoints,
and routing a request through one (what it may reach, what it costs, what it sells)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.text import slugify

from checkout.models import Merchant
from config.problems import Problem
from config.ssrf import UnsafeTarget, check_url

from .. import macaroons, paths
from ..forwarding import seal
from ..macaroons import RequestScope
from ..models import L402Challenge, OneTimeKey, Proxy, ProxyEndpoint
from .offers import Offer

PROXY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


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
