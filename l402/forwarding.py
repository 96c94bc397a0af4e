"""Sending a paid request on to a proxy's upstream and streaming its answer back.

The target is vetted again at request time (config.ssrf) and the connection goes to the
address that was vetted, so a DNS change between the check and the request cannot reach
an internal host. Our own credentials (Authorization, X-Api-Key, cookies) never leave;
the proxy's `authHeader: authValue` is injected instead.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from cryptography.fernet import Fernet
from django.conf import settings
from django.http import StreamingHttpResponse

from config.problems import Problem
from config.ssrf import Target, UnsafeTarget, check_url, pinned_connection

if TYPE_CHECKING:
    from .services.proxies import Route

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
# Hop-by-hop headers (RFC 9110 7.6.1) and what describes our side of the connection.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "cookie",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-csrftoken",
}
NOT_RETURNED = HOP_BY_HOP | {"set-cookie", "content-length"}


@lru_cache(maxsize=1)
def _fernet() -> Fernet:
    key = hashlib.sha256(settings.SECRET_KEY.encode() + b"|zapgate l402 proxy auth").digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(value: str) -> str:
    """Encrypt an upstream credential for storage (it must be sent, so it cannot be hashed)."""
    return _fernet().encrypt(value.encode()).decode()


def unseal(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def upstream_headers(request_meta: dict, proxy) -> dict[str, str]:
    """The client's headers that may go upstream, then the proxy's own credential. A
    client header with the credential's name (in any case) is dropped, so the upstream
    never sees a second value next to the injected one (nor the client's value when the
    proxy has no stored value). "_" counts as "-", as WSGI servers read them alike."""
    injected = proxy.auth_header.lower().replace("_", "-")
    headers = {}
    for key, value in request_meta.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
        elif key == "CONTENT_TYPE" and value:
            name = "Content-Type"
        else:
            continue
        if name.lower() not in NOT_FORWARDED and name.lower() != injected:
            headers[name] = value
    if proxy.auth_header and proxy.auth_value_encrypted:
        headers[proxy.auth_header] = unseal(proxy.auth_value_encrypted)
    return headers


def vet(proxy) -> Target:
    """The proxy's upstream, checked against the SSRF rules now (not only when saved)."""
    try:
        return check_url(
            proxy.target_base_url, allow_private=settings.L402_PROXY_ALLOW_PRIVATE_TARGETS
        )
    except UnsafeTarget as exc:
        raise Problem(502, "upstream_refused", f"the upstream may not be reached: {exc}") from None


def forward(target: Route, vetted: Target, query: str, headers: dict[str, str], body: bytes):
    """Send the request to the vetted address; a StreamingHttpResponse carrying the answer
    as it comes. Raises Problem 502 (unreachable) or 504 (timed out)."""
    proxy = target.proxy
    base = proxy.target_base_url.rstrip("/")
    parts = urlsplit(base)
    # The normalised path that was matched, encoded so that the upstream decodes exactly it.
    upstream_path = parts.path + quote(target.path, safe="/:@!$&'()*+,=-._~")
    if query:
        upstream_path += "?" + query
    connection = pinned_connection(vetted, proxy.timeout_seconds)
    default_port = 443 if vetted.scheme == "https" else 80
    headers["Host"] = vetted.host if vetted.port == default_port else f"{vetted.host}:{vetted.port}"
    try:
        connection.request(target.method, upstream_path, body=body or None, headers=headers)
        upstream = connection.getresponse()
    except TimeoutError:
        connection.close()
        raise Problem(
            504,
            "upstream_timeout",
            f"the upstream did not answer within {proxy.timeout_seconds} s",
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        raise Problem(
            502, "upstream_unreachable", f"the upstream could not be reached: {exc}"
        ) from None
    response = StreamingHttpResponse(
        _stream(connection, upstream, proxy.proxy_id), status=upstream.status
    )
    returned: dict[str, list[str]] = {}
    for name, value in upstream.getheaders():
        if name.lower() not in NOT_RETURNED:
            returned.setdefault(name, []).append(value)
    if not any(name.lower() == "content-type" for name in returned):
        del response["Content-Type"]  # not Django's text/html default
    for name, values in returned.items():
        response[name] = ", ".join(values)
    return response


def _stream(connection, upstream, proxy_id):
    try:
        while chunk := upstream.read1(CHUNK_SIZE):
            yield chunk
    except (OSError, http.client.HTTPException) as exc:
        # The status is already sent: end the body short so the client sees a broken answer.
        log.warning("upstream of proxy %s broke off mid-answer: %s", proxy_id, exc)
        raise
    finally:
        connection.close()
