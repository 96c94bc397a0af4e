"""L402 manifests: what a proxy sells, in a form agents can discover and read
(`/.well-known/l402-manifest.json`, a per-proxy OpenAPI document, the public registry),
and the validator that says what is wrong with a manifest."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import Proxy, ProxyEndpoint

MANIFEST_VERSION = "1.0"
PAYMENT_FLOW = "402_challenge_response"
AUTH_HEADER_FORMAT = "Authorization: L402 <macaroon>:<preimage>"
PRICING_MODELS = ("fixed",)
METHODS = tuple(ProxyEndpoint.Method.values)


def schema_url() -> str:
    return f"{settings.PUBLIC_BASE_URL}/api/manifests/schema.json"


def proxy_base_url(proxy: Proxy) -> str:
    return f"{settings.PUBLIC_BASE_URL}/l402/proxy/{proxy.proxy_id}"


def manifest_url(proxy: Proxy) -> str:
    return f"{proxy_base_url(proxy)}/.well-known/l402-manifest.json"


def build_manifest(proxy: Proxy) -> dict:
    return {
        "$schema": schema_url(),
        "version": MANIFEST_VERSION,
        "service": {
            "name": proxy.name,
            "description": proxy.service_description or proxy.description,
            "base_url": proxy_base_url(proxy),
            "documentation_url": proxy.documentation_url or f"{proxy_base_url(proxy)}/openapi.json",
            "categories": list(proxy.categories),
        },
        "l402": {
            "default_price_sats": proxy.default_price_sats,
            "payment_flow": PAYMENT_FLOW,
            "auth_header_format": AUTH_HEADER_FORMAT,
        },
        "endpoints": [
            {
                "id": endpoint.endpoint_id,
                "path": endpoint.path,
                "method": endpoint.http_method,
                "summary": endpoint.summary,
                "pricing": {"model": "fixed", "base_price_sats": endpoint.base_price_sats},
                "l402_enabled": True,
            }
            for endpoint in proxy.endpoints.all()
        ],
        "generated_at": timezone.now().isoformat().replace("+00:00", "Z"),
    }


def build_openapi(proxy: Proxy) -> dict:
    paths: dict[str, dict] = {}
    for endpoint in proxy.endpoints.all():
        parameters = [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in endpoint.path.split("/")
            if part.startswith("{") and part.endswith("}")
        ]
        operation = {
            "operationId": endpoint.endpoint_id,
            "summary": endpoint.summary,
            "security": [{"L402": []}],
            "x-l402-price-sats": endpoint.base_price_sats,
            "responses": {
                "200": {"description": "The upstream's answer, passed through."},
                "402": {
                    "description": (
                        f"Payment required: pay the invoice in WWW-Authenticate "
                        f"({endpoint.base_price_sats} sats), then retry with "
                        "Authorization: L402 <macaroon>:<preimage>."
                    )
                },
            },
        }
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(endpoint.path, {})[endpoint.http_method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": proxy.name,
            "description": proxy.service_description or proxy.description,
            "version": MANIFEST_VERSION,
        },
        "servers": [{"url": proxy_base_url(proxy)}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "L402": {
                    "type": "http",
                    "scheme": "L402",
                    "description": (
                        "Pay the Lightning invoice of the 402 challenge; send the macaroon "
                        f"with the payment preimage. Unpriced paths cost "
                        f"{proxy.default_price_sats} sats."
                    ),
                }
            }
        },
    }


def listed_proxies():
    return (
        Proxy.objects.filter(
            manifest_enabled=True,
            manifest_publicly_listed=True,
            is_active=True,
            retired_at__isnull=True,
        )
        .prefetch_related("endpoints")
        .order_by("name", "pk")
    )


def registry(q: str, category: str, page: int, page_size: int) -> dict:
    proxies = listed_proxies()
    if q:
        proxies = proxies.filter(
            Q(name__icontains=q) | Q(description__icontains=q) | Q(service_description__icontains=q)
        )
    matching = list(proxies)
    if category:
        # Categories are a JSON list; SQLite cannot search inside one, so filter here.
        wanted = category.strip().lower()
        matching = [p for p in matching if wanted in (c.lower() for c in p.categories)]
    start = (page - 1) * page_size
    return {
        "items": [
            {
                "name": proxy.name,
                "description": proxy.service_description or proxy.description,
                "manifestUrl": manifest_url(proxy),
                "proxyBaseUrl": proxy_base_url(proxy),
                "documentationUrl": proxy.documentation_url
                or f"{proxy_base_url(proxy)}/openapi.json",
                "parsedCategories": list(proxy.categories),
                "endpointCount": len(proxy.endpoints.all()),
                "defaultPriceSats": proxy.default_price_sats,
            }
            for proxy in matching[start : start + page_size]
        ],
        "total": len(matching),
        "page": page,
        "pageSize": page_size,
    }


# The JSON Schema of a manifest, served for `$schema`; `validate_manifest` applies the same
# rules and says in words what breaks them.
MANIFEST_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "L402 manifest",
    "type": "object",
    "required": ["version", "service", "l402", "endpoints"],
    "properties": {
        "$schema": {"type": "string"},
        "version": {"const": MANIFEST_VERSION},
        "service": {
            "type": "object",
            "required": ["name", "base_url"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "base_url": {"type": "string", "format": "uri"},
                "documentation_url": {"type": ["string", "null"], "format": "uri"},
                "categories": {"type": "array", "items": {"type": "string"}},
            },
        },
        "l402": {
            "type": "object",
            "required": ["payment_flow"],
            "properties": {
                "default_price_sats": {"type": "integer", "minimum": 1},
                "payment_flow": {"const": PAYMENT_FLOW},
                "auth_header_format": {"type": "string"},
            },
        },
        "endpoints": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "path", "method", "pricing"],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "path": {"type": "string", "pattern": "^/"},
                    "method": {"enum": list(METHODS)},
                    "summary": {"type": "string"},
                    "pricing": {
                        "type": "object",
                        "required": ["model", "base_price_sats"],
                        "properties": {
                            "model": {"enum": list(PRICING_MODELS)},
                            "base_price_sats": {"type": "integer", "minimum": 0},
                        },
                    },
                    "l402_enabled": {"type": "boolean"},
                },
            },
        },
        "generated_at": {"type": "string", "format": "date-time"},
    },
}


def validate_manifest(data) -> list[str]:
    """Every problem of a manifest, one message each (empty: valid)."""
    if not isinstance(data, dict):
        return ["the manifest must be a JSON object"]
    errors: list[str] = []
    if data.get("version") != MANIFEST_VERSION:
        errors.append(f'version must be "{MANIFEST_VERSION}"')
    if "$schema" in data and not isinstance(data["$schema"], str):
        errors.append("$schema must be a string")
    service = data.get("service")
    if not isinstance(service, dict):
        errors.append("service must be an object")
    else:
        if not _nonempty_str(service.get("name")):
            errors.append("service.name must be a non-empty string")
        if "description" in service and not isinstance(service["description"], str):
            errors.append("service.description must be a string")
        if not _http_url(service.get("base_url")):
            errors.append("service.base_url must be an http(s) URL")
        documentation = service.get("documentation_url")
        if documentation not in (None, "") and not _http_url(documentation):
            errors.append("service.documentation_url must be an http(s) URL")
        categories = service.get("categories", [])
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            errors.append("service.categories must be a list of strings")
    l402 = data.get("l402")
    if not isinstance(l402, dict):
        errors.append("l402 must be an object")
    else:
        price = l402.get("default_price_sats")
        if price is not None and not _int_at_least(price, 1):
            errors.append("l402.default_price_sats must be an integer of at least 1")
        if l402.get("payment_flow") != PAYMENT_FLOW:
            errors.append(f'l402.payment_flow must be "{PAYMENT_FLOW}"')
        if "auth_header_format" in l402 and not isinstance(l402["auth_header_format"], str):
            errors.append("l402.auth_header_format must be a string")
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list):
        errors.append("endpoints must be a list")
    else:
        seen = set()
        for index, endpoint in enumerate(endpoints):
            errors += _endpoint_errors(f"endpoints[{index}]", endpoint, seen)
    generated = data.get("generated_at")
    if generated is not None and not _iso_datetime(generated):
        errors.append("generated_at must be an ISO 8601 date-time")
    return errors


def _endpoint_errors(where: str, endpoint, seen: set) -> list[str]:
    if not isinstance(endpoint, dict):
        return [f"{where} must be an object"]
    errors = []
    endpoint_id = endpoint.get("id")
    if not _nonempty_str(endpoint_id):
        errors.append(f"{where}.id must be a non-empty string")
    elif endpoint_id in seen:
        errors.append(f"{where}.id {endpoint_id!r} is used twice")
    else:
        seen.add(endpoint_id)
    path = endpoint.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        errors.append(f"{where}.path must be a string starting with /")
    if endpoint.get("method") not in METHODS:
        errors.append(f"{where}.method must be one of {', '.join(METHODS)}")
    if "summary" in endpoint and not isinstance(endpoint["summary"], str):
        errors.append(f"{where}.summary must be a string")
    pricing = endpoint.get("pricing")
    if not isinstance(pricing, dict):
        errors.append(f"{where}.pricing must be an object")
    else:
        if pricing.get("model") not in PRICING_MODELS:
            errors.append(f"{where}.pricing.model must be one of {', '.join(PRICING_MODELS)}")
        if not _int_at_least(pricing.get("base_price_sats"), 0):
            errors.append(f"{where}.pricing.base_price_sats must be a non-negative integer")
    if "l402_enabled" in endpoint and not isinstance(endpoint["l402_enabled"], bool):
        errors.append(f"{where}.l402_enabled must be true or false")
    return errors


def _nonempty_str(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _int_at_least(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _http_url(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _iso_datetime(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
