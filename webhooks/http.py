"""The one HTTP POST of a webhook attempt (and the GET of an LNURL fetched for a refund),
made safe for URLs that merchants and buyers give.

The URL is vetted by the SSRF guard at send time and the connection goes to the address
that was vetted (so a DNS answer that changes between check and connect cannot point us
inward), with the URL's host in the Host header, TLS SNI and certificate check. Redirects
are not followed, the whole exchange has one deadline, and only the start of the answer
is read.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from config.ssrf import UnsafeTarget, check_url, pinned_connection

EXCERPT_BYTES = 4096
USER_AGENT = "Zapgate-Webhooks/1"


@dataclass
class Outcome:
    status_code: int | None
    excerpt: str
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict, timeout: float, allow_private: bool) -> Outcome:
    return request(
        "POST",
        url,
        body,
        {**headers, "Content-Type": "application/json", "User-Agent": USER_AGENT},
        timeout,
        allow_private,
    )


def request(
    method: str,
    url: str,
    body: bytes | None,
    headers: dict,
    timeout: float,
    allow_private: bool,
    max_bytes: int = EXCERPT_BYTES,
) -> Outcome:
    """One exchange with a vetted, pinned address; the answer's first `max_bytes` bytes are
    its excerpt. A redirect or a non-2xx answer is an outcome with an error."""
    started = time.monotonic()

    def outcome(status=None, excerpt="", error=""):
        duration = int((time.monotonic() - started) * 1000)
        return Outcome(status, excerpt, error[:500], duration)

    try:
        target = check_url(url, allow_private=allow_private)
    except UnsafeTarget as exc:
        return outcome(error=f"refused: {exc}")
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = pinned_connection(target, timeout)
    # One deadline for the whole exchange: a receiver that trickles its answer byte by byte
    # gets its socket shut when the time is up.
    deadline = threading.Timer(timeout, _shut, args=(conn,))
    deadline.daemon = True
    deadline.start()
    try:
        conn.request(method, path, body=body, headers={**headers, "Connection": "close"})
        response = conn.getresponse()
        excerpt = response.read(max_bytes).decode("utf-8", errors="replace")
        status = response.status
        if 300 <= status < 400:
            location = response.getheader("Location", "")
            return outcome(status, excerpt, f"redirects are not followed (to {location[:200]})")
        if not 200 <= status < 300:
            return outcome(status, excerpt, f"the endpoint answered HTTP {status}")
        return outcome(status, excerpt)
    except TimeoutError:
        return outcome(error=f"timed out after {timeout:g} s")
    except ssl.SSLError as exc:
        return outcome(error=f"TLS error: {exc}")
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() - started >= timeout:
            return outcome(error=f"timed out after {timeout:g} s")
        return outcome(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    finally:
        deadline.cancel()
        conn.close()


def _shut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
