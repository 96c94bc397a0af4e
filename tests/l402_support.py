"""Helpers for the L402 tests: a real upstream HTTP server on loopback, paying through the
dev node, and a v2 macaroon decoder written from the format's spec (independent of
pymacaroons, which is what the gateway uses)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lightning.backends import get_backend


def pay(bolt11: str) -> str:
    """Pay with the dev node as the buyer's wallet; returns the preimage (hex)."""
    return get_backend().pay_invoice(bolt11).preimage


def credential(challenge: dict, preimage: str, scheme: str = "L402") -> str:
    return f"{scheme} {challenge['macaroon']}:{preimage}"


# --- MPP (the Payment scheme), written from draft-httpauth-payment, not from l402.mpp --------


def mpp_challenge(header: str) -> dict:
    """The parameters of the `Payment` challenge in a WWW-Authenticate value."""
    start = header.index("Payment ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', header[start:].split(", L402 ")[0]))
    assert {"id", "realm", "method", "intent", "request", "expires"} <= set(params), params
    return params


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mpp_request(header: str) -> dict:
    """The decoded `request` of the Payment challenge in a header value."""
    return json.loads(_unb64url(mpp_challenge(header)["request"]))


def mpp_credential(header: str, preimage: str, **changes) -> str:
    """`Authorization: Payment <base64url JCS {challenge echo, payload {preimage}}>`."""
    echo = {**mpp_challenge(header), **changes}
    body = json.dumps(
        {"challenge": echo, "payload": {"preimage": preimage}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "Payment " + base64.urlsafe_b64encode(body.encode()).rstrip(b"=").decode()


# --- an upstream API on loopback ---------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: bytes
    header_list: list[tuple[str, str]] = field(default_factory=list)  # repeats kept


@dataclass
class Upstream:
    """A threaded HTTP server that records what reached it. Routes, by last segment:
    /slow (answers after 3 s, or when released), /fail (503), /stream (chunked: sends its
    first part, then waits for `proceed` before the rest), else 200 echoing the request."""

    server: ThreadingHTTPServer
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    proceed: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def start_upstream() -> Upstream:
    upstream: Upstream

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            upstream.seen.append(
                Seen(self.command, self.path, dict(self.headers), body, self.headers.items())
            )
            route = self.path.split("?")[0].rsplit("/", 1)[-1]
            if route == "slow":
                upstream.release.wait(3)
                self._send(200, b"late")
            elif route == "fail":
                self._send(503, b'{"error":"upstream down"}', extra={"Retry-After": "7"})
            elif route == "stream":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (b"first\n", b"second\n", b"third\n"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
                    upstream.proceed.wait(5)
                self.wfile.write(b"0\r\n\r\n")
            else:
                echo = {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body.decode(errors="replace"),
                }
                self._send(200, json.dumps(echo).encode(), extra={"X-Upstream": "yes"})

        def _send(self, code, payload, extra=None):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Set-Cookie", "upstream_session=1")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    upstream = Upstream(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return upstream


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# --- macaroon v2 binary, read from the spec ------------------------------------------------------
# Format (libmacaroons / go-macaroon "v2"): a version byte 0x02; fields are
# <type byte><uvarint length><data>; sections end with an EOS byte 0. Header: optional
# location (1), identifier (2), EOS. Each caveat: optional location (1), identifier (2),
# optional verification id (4), EOS. An EOS ends the caveats; then the signature (6).

EOS, LOCATION, IDENTIFIER, VID, SIGNATURE = 0, 1, 2, 4, 6


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _section(data: bytes, pos: int) -> tuple[dict[int, bytes], int]:
    fields = {}
    while data[pos] != EOS:
        kind = data[pos]
        length, pos = _uvarint(data, pos + 1)
        fields[kind] = data[pos : pos + length]
        pos += length
    return fields, pos + 1


def decode_v2(raw: bytes) -> dict:
    assert raw[0] == 2, "not a v2 binary macaroon"
    header, pos = _section(raw, 1)
    caveats = []
    while raw[pos] != EOS:
        caveat, pos = _section(raw, pos)
        caveats.append(caveat)
    pos += 1
    assert raw[pos] == SIGNATURE
    length, pos = _uvarint(raw, pos + 1)
    signature = raw[pos : pos + length]
    assert pos + length == len(raw), "trailing bytes after the signature"
    return {
        "location": header.get(LOCATION, b"").decode(),
        "identifier": header[IDENTIFIER],
        "caveats": [c[IDENTIFIER].decode() for c in caveats],
        "third_party": [c for c in caveats if VID in c],
        "signature": signature,
    }


def signature_chain(root_key: bytes, identifier: bytes, caveats: list[str]) -> bytes:
    """The HMAC chain every macaroon library computes (libmacaroons derives the signing
    key from the root key with the fixed "macaroons-key-generator" key)."""
    key = hmac.new(b"macaroons-key-generator", root_key, hashlib.sha256).digest()
    signature = hmac.new(key, identifier, hashlib.sha256).digest()
    for caveat in caveats:
        signature = hmac.new(signature, caveat.encode(), hashlib.sha256).digest()
    return signature
