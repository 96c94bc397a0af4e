"""The SSRF guard for every outbound request to a merchant-given URL (webhook endpoints,
reverse-proxy targets).

Only http(s). The host is resolved and every address it resolves to must be public:
private, loopback, link-local, multicast, reserved, unspecified and shared (CGNAT)
addresses are refused, IPv4 and IPv6 alike, including IPv4-mapped/compatible IPv6 and
6to4/Teredo forms of private IPv4. Check when the URL is saved and again at send time, and
connect to the address that was checked (`pinned_address`), so DNS rebinding between the
check and the request cannot reach an internal host.

That connection is made here too (`pinned_connection`), next to the check it completes:
webhook deliveries, LNURL fetches and the L402 proxy all connect through it, so none can
resolve the host name again, and none can forget TLS's check of the URL's host name.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


class UnsafeTarget(ValueError):
    """The URL may not be requested; the message says why (safe to show the merchant)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]  # every resolved address, all checked

    @property
    def pinned_address(self) -> str:
        return self.addresses[0]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
        or not ip.is_global
    )


def check_url(url: str, allow_private: bool, resolve: bool = True) -> Target:
    """Parse, resolve and vet `url`. Raises UnsafeTarget with a reason a merchant can act on."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeTarget("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in the URL are not allowed")
    port = port or (443 if parts.scheme == "https" else 80)
    if not resolve:
        return Target(parts.scheme, parts.hostname, port, ())
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"the host {parts.hostname} does not resolve: {exc}") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise UnsafeTarget(
                    f"the host {parts.hostname} resolves to {address}, a private, loopback, "
                    "link-local or reserved address; such targets are refused "
                    "(the operator may allow them)"
                )
    return Target(parts.scheme, parts.hostname, port, addresses)


_TLS = ssl.create_default_context()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the vetted address; the Host header keeps the URL's host name."""

    def __init__(self, target: Target, timeout: float, **kwargs):
        super().__init__(target.host, target.port, timeout=timeout, **kwargs)
        self.pinned = target.pinned_address

    def connect(self):
        self.sock = self._pinned_socket()

    def _pinned_socket(self) -> socket.socket:
        sock = socket.create_connection((self.pinned, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class _PinnedHTTPSConnection(_PinnedHTTPConnection, http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float):
        super().__init__(target, timeout, context=_TLS)

    def connect(self):
        # SNI and the certificate check use the URL's host name, not the pinned address.
        self.sock = self._context.wrap_socket(self._pinned_socket(), server_hostname=self.host)


def pinned_connection(target: Target, timeout: float) -> http.client.HTTPConnection:
    """An HTTP or HTTPS connection (by the target's scheme) that will connect to the
    address `check_url` vetted, never to what the host name resolves to by then. Nothing is
    sent until its first request; `timeout` bounds the connect and each socket read."""
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    return cls(target, timeout)
