"""The L402 protocol core: minting macaroons, reading credentials, checking them.

Tokens have the shape Lightning Labs' Aperture uses, so any L402 client can carry them:
a v2 binary macaroon, standard base64 in headers, whose identifier is
`uint16 version (0) || payment_hash (32 bytes) || token_id (32 bytes)`. The root key of
each token is HMAC-SHA256(server secret, token_id), so nothing per token is stored and a
reusable token is checked without a database or node call: sha256(preimage) must equal
the payment hash in the identifier (the preimage proves payment), the signature must hold
under the derived root key, and every first-party caveat `condition=value` must hold for
the request at hand.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from django.conf import settings
from pymacaroons import MACAROON_V2, Macaroon
from pymacaroons.serializers.binary_serializer import BinarySerializer

_KEY_GENERATOR = b"macaroons-key-generator"
IDENTIFIER_VERSION = 0
IDENTIFIER_LENGTH = 2 + 32 + 32
LOCATION = "zapgate"
SCHEMES = ("L402", "LSAT")

# Caveat conditions this gateway mints and understands. A client may add more of these
# to narrow its own token (attenuation); any other condition makes the token invalid.
EXPIRES = "expires"  # unix seconds
MERCHANT = "merchant"  # merchant public id
RESOURCE = "resource"  # a named resource (demo, premium-data, a merchant's resource)
CONTENT = "content"  # comma-separated content slugs (one item or a bundle)
PROXY = "proxy"  # a proxy id
ENDPOINT = "endpoint"  # "<METHOD> <path pattern>" of a priced proxy endpoint
METHOD = "method"  # comma-separated HTTP methods
PATH = "path"  # exact request path
BODY_SHA256 = "body_sha256"  # hex sha256 of the exact request body
AMOUNT = "amount"  # sats paid (informational: it always holds)
SCOPES = (RESOURCE, CONTENT, PROXY)


class CredentialError(Exception):
    """The credential is unusable. `status` is 401 (bad or foreign token) or 402 (expired:
    the client should pay again); `error` is a stable slug; the message says why."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status = status
        self.error = error


@dataclass(frozen=True)
class Identifier:
    version: int
    payment_hash: bytes
    token_id: bytes

    def encode(self) -> bytes:
        return struct.pack(">H32s32s", self.version, self.payment_hash, self.token_id)

    @classmethod
    def decode(cls, raw: bytes) -> Identifier:
        if len(raw) != IDENTIFIER_LENGTH:
            raise CredentialError(
                401, "malformed_token", "the macaroon identifier is not an L402 identifier"
            )
        version, payment_hash, token_id = struct.unpack(">H32s32s", raw)
        if version != IDENTIFIER_VERSION:
            raise CredentialError(
                401, "malformed_token", f"unknown macaroon identifier version {version}"
            )
        return cls(version, payment_hash, token_id)


@dataclass(frozen=True)
class Token:
    """A verified token: what it was minted for."""

    payment_hash: str
    caveats: Mapping[str, tuple[str, ...]]  # read-only: verified tokens are shared

    def first(self, condition: str) -> str | None:
        values = self.caveats.get(condition)
        return values[0] if values else None

    @property
    def amount_sats(self) -> int | None:
        value = self.first(AMOUNT)
        return int(value) if value and value.isdigit() else None


@dataclass
class RequestScope:
    """What a request is for; each caveat of a token must agree with it."""

    merchant: str | None = None
    resource: str | None = None
    content: str | None = None
    proxy: str | None = None
    endpoint: str | None = None
    method: str | None = None
    path: str | None = None
    body: bytes | None = field(default=None, repr=False)
    now: float | None = None


@lru_cache(maxsize=1)
def server_secret() -> bytes:
    if settings.L402_ROOT_KEY_SECRET:
        return settings.L402_ROOT_KEY_SECRET.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"zapgate l402 root key", "sha256").digest()


def root_key(token_id: bytes) -> bytes:
    return hmac.new(server_secret(), token_id, hashlib.sha256).digest()


def signature(root: bytes, identifier: bytes, caveats) -> bytes:
    """The macaroon HMAC chain (as libmacaroons, go-macaroon and pymacaroons compute it):
    HMAC over the identifier under a key derived from the root key, then over each caveat.
    Tokens are minted with pymacaroons; they are checked with this and `parse_v2`, which
    cost a fraction of pymacaroons' parser and Verifier per request."""
    derived = hmac.new(_KEY_GENERATOR, root, hashlib.sha256).digest()
    sig = hmac.new(derived, identifier, hashlib.sha256).digest()
    for caveat in caveats:
        sig = hmac.new(sig, caveat, hashlib.sha256).digest()
    return sig


def mint(payment_hash: str, caveats: list[tuple[str, str]]) -> str:
    """A new token for the invoice with this payment hash; returns it as standard base64."""
    token_id = secrets.token_hex(32)
    return assemble(
        payment_hash, token_id, [f"{condition}={value}" for condition, value in caveats]
    )


def assemble(payment_hash: str, token_id: str, caveats: list[str]) -> str:
    """The token with this id (hex) and these caveats, signed under its root key: the same
    bytes as when it was minted. Only the server secret makes it, so what is stored to show
    a token again (`stored_parts`) is no token."""
    token_id_bytes = bytes.fromhex(token_id)
    identifier = Identifier(IDENTIFIER_VERSION, bytes.fromhex(payment_hash), token_id_bytes)
    macaroon = Macaroon(
        location=LOCATION,
        identifier=identifier.encode(),
        key=root_key(token_id_bytes),
        version=MACAROON_V2,
    )
    for caveat in caveats:
        macaroon.add_first_party_caveat(caveat)
    return base64.b64encode(BinarySerializer().serialize_raw(macaroon)).decode()


def stored_parts(encoded: str) -> tuple[str, list[str]]:
    """What to keep of a token this server minted: its id (hex) and caveats, without its
    signature. With the payment hash, `assemble` makes the token again."""
    macaroon = decode_macaroon(encoded)
    token_id = Identifier.decode(macaroon.identifier).token_id
    return token_id.hex(), [caveat.decode() for caveat in macaroon.caveats]


def parse_authorization(header: str) -> tuple[str, str] | None:
    """`L402 <macaroon>:<preimage>` (or LSAT) -> (macaroon, preimage); None when the header
    uses another scheme (so the request is simply unpaid). Raises CredentialError when it
    is an L402 credential that is malformed."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.upper() not in SCHEMES:
        return None
    macaroon, sep, preimage = rest.strip().rpartition(":")
    if not sep or not macaroon or not preimage:
        raise CredentialError(
            401,
            "malformed_credential",
            "the credential must be 'L402 <base64 macaroon>:<hex preimage>'",
        )
    return macaroon.strip(), preimage.strip()


@dataclass(frozen=True)
class Macaroon2:
    """A decoded v2 binary macaroon: what verification needs, nothing more."""

    identifier: bytes
    caveats: tuple[bytes, ...]  # first-party caveat ids
    signature: bytes


# v2 binary fields: <type><uvarint length><data>; a 0 byte ends a section.
_EOS, _LOCATION, _IDENTIFIER, _VID, _SIGNATURE = 0, 1, 2, 4, 6


def _malformed(why: str) -> CredentialError:
    return CredentialError(401, "malformed_token", f"the macaroon is malformed: {why}")


def _field(raw: bytes, pos: int) -> tuple[int, bytes, int]:
    kind = raw[pos]
    length = shift = 0
    pos += 1
    while True:  # uvarint, at most 4 bytes (2^28: far beyond any header)
        if pos >= len(raw) or shift > 21:
            raise _malformed("bad field length")
        byte = raw[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    if pos + length > len(raw):
        raise _malformed("a field runs past the end")
    return kind, raw[pos : pos + length], pos + length


def _section(raw: bytes, pos: int, allowed: tuple[int, ...]) -> tuple[dict[int, bytes], int]:
    fields: dict[int, bytes] = {}
    last = -1
    while True:
        if pos >= len(raw):
            raise _malformed("a section is not terminated")
        if raw[pos] == _EOS:
            if _IDENTIFIER not in fields:
                raise _malformed("a section has no identifier")
            return fields, pos + 1
        kind, data, pos = _field(raw, pos)
        if kind not in allowed or kind <= last:
            raise _malformed(f"unexpected field type {kind}")
        fields[kind], last = data, kind


def parse_v2(raw: bytes) -> Macaroon2:
    """The v2 binary format (libmacaroons/go-macaroon): version byte 2; a header section
    (location?, identifier); caveat sections (location?, identifier, verification id?); an
    end-of-section byte; the signature field. Third-party caveats (with a verification id)
    are refused: this gateway never mints them."""
    if not raw or raw[0] != 2:
        raise CredentialError(401, "malformed_token", "only v2 binary macaroons are accepted")
    header, pos = _section(raw, 1, (_LOCATION, _IDENTIFIER))
    caveats = []
    while True:
        if pos >= len(raw):
            raise _malformed("the caveats are not terminated")
        if raw[pos] == _EOS:
            pos += 1
            break
        caveat, pos = _section(raw, pos, (_LOCATION, _IDENTIFIER, _VID))
        if _VID in caveat:
            raise CredentialError(401, "invalid_caveat", "third-party caveats are not accepted")
        caveats.append(caveat[_IDENTIFIER])
    if pos >= len(raw) or raw[pos] != _SIGNATURE:
        raise _malformed("no signature")
    _, signature, pos = _field(raw, pos)
    if pos != len(raw) or len(signature) != 32:
        raise _malformed("bad signature")
    return Macaroon2(header[_IDENTIFIER], tuple(caveats), signature)


def decode_macaroon(encoded: str) -> Macaroon2:
    """Standard or URL-safe base64, padded or not (Aperture and clients differ)."""
    text = encoded.strip()
    try:
        raw = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise CredentialError(
            401, "malformed_token", "the macaroon is not valid base64 of a binary macaroon"
        ) from None
    return parse_v2(raw)


@lru_cache(maxsize=8192)
def verify(encoded_macaroon: str, preimage_hex: str) -> Token:
    """Check the token's signature and its proof of payment; caveats are checked by
    `check_scope`, on every use. Raises CredentialError saying why.

    The outcome for a given credential never changes (the root key derives from the
    server secret), so valid ones are remembered per process: a reused token costs a
    dictionary lookup. Failures are not cached."""
    macaroon = decode_macaroon(encoded_macaroon)
    identifier = Identifier.decode(macaroon.identifier)
    try:
        preimage = bytes.fromhex(preimage_hex)
    except ValueError:
        raise CredentialError(401, "malformed_preimage", "the preimage is not hex") from None
    if len(preimage) != 32:
        raise CredentialError(401, "malformed_preimage", "the preimage must be 32 bytes (64 hex)")
    expected = signature(root_key(identifier.token_id), macaroon.identifier, macaroon.caveats)
    if not hmac.compare_digest(expected, macaroon.signature):
        raise CredentialError(
            401, "invalid_signature", "the macaroon signature does not verify (tampered or foreign)"
        )
    if not hmac.compare_digest(hashlib.sha256(preimage).digest(), identifier.payment_hash):
        raise CredentialError(
            401, "invalid_preimage", "the preimage does not match the token's payment hash"
        )
    caveats: dict[str, tuple[str, ...]] = {}
    for caveat in macaroon.caveats:
        try:
            text = caveat.decode()
        except UnicodeDecodeError:
            raise CredentialError(401, "invalid_caveat", "a caveat is not UTF-8 text") from None
        condition, sep, value = text.partition("=")
        if not sep:
            raise CredentialError(401, "invalid_caveat", f"caveat {text!r} is malformed")
        condition = condition.strip()
        caveats[condition] = (*caveats.get(condition, ()), value.strip())
    return Token(payment_hash=identifier.payment_hash.hex(), caveats=MappingProxyType(caveats))


def check_scope(token: Token, scope: RequestScope) -> None:
    """Every caveat must hold for this request. An expired token raises a 402 (pay again);
    a token for something else a 401 saying what it is for."""
    if not any(condition in token.caveats for condition in SCOPES):
        raise CredentialError(401, "token_out_of_scope", "the token names no resource")
    # Expiry last: a token for something else is a 401 even when it has also expired.
    for condition, values in sorted(token.caveats.items(), key=lambda item: item[0] == EXPIRES):
        for value in values:
            _check_caveat(condition, value, scope)
    if scope.endpoint is not None and ENDPOINT not in token.caveats:
        # A priced endpoint needs a token bought for it, not a proxy-wide default one.
        raise CredentialError(
            401, "token_out_of_scope", f"the endpoint {scope.endpoint} needs its own token"
        )


# Conditions that only the request itself can satisfy.
REQUEST_BOUND = (METHOD, PATH, BODY_SHA256)


def check_without_request(token: Token, merchant: str) -> None:
    """Every caveat of a token, where there is no request to hold it against (a merchant's
    server asking whether a credential is good): every merchant and expiry caveat holds,
    repeated conditions agree (two different resources can never both hold), and a
    caveat only a request could satisfy fails closed."""
    if not any(condition in token.caveats for condition in SCOPES):
        raise CredentialError(401, "token_out_of_scope", "the token names no resource")
    merchants = token.caveats.get(MERCHANT, ())
    _require(
        bool(merchants) and all(value == merchant for value in merchants),
        "the token was issued for another merchant",
    )
    for condition, values in token.caveats.items():
        if condition in REQUEST_BOUND:
            raise CredentialError(
                401,
                "token_out_of_scope",
                f"the token is restricted to a {condition} that this check cannot see",
            )
        if condition not in (EXPIRES, MERCHANT, AMOUNT, ENDPOINT, *SCOPES):
            raise CredentialError(401, "invalid_caveat", f"unknown caveat condition {condition!r}")
        if condition != EXPIRES and len(set(values)) > 1:
            raise CredentialError(
                401, "token_out_of_scope", f"the token's {condition} caveats disagree"
            )
    for value in token.caveats.get(EXPIRES, ()):
        _check_caveat(EXPIRES, value, RequestScope())


def _check_caveat(condition: str, value: str, scope: RequestScope) -> None:
    if condition == EXPIRES:
        if not value.isdigit():
            raise CredentialError(401, "invalid_caveat", "the expiry caveat is not a unix time")
        if (scope.now or time.time()) >= int(value):
            raise CredentialError(402, "token_expired", "the token has expired; pay again")
    elif condition == AMOUNT:
        pass
    elif condition == MERCHANT:
        _require(value == scope.merchant, "the token was issued for another merchant")
    elif condition == RESOURCE:
        _require(value == scope.resource, f"the token is for the resource {value!r}")
    elif condition == CONTENT:
        _require(
            scope.content is not None and scope.content in value.split(","),
            f"the token is for the content {value!r}",
        )
    elif condition == PROXY:
        _require(value == scope.proxy, f"the token is for the proxy {value!r}")
    elif condition == ENDPOINT:
        _require(value == scope.endpoint, f"the token is for the endpoint {value!r}")
    elif condition == METHOD:
        _require(
            scope.method is not None and scope.method.upper() in value.upper().split(","),
            f"the token allows only the methods {value}",
        )
    elif condition == PATH:
        _require(value == scope.path, f"the token is for the path {value!r}")
    elif condition == BODY_SHA256:
        body_hash = hashlib.sha256(scope.body or b"").hexdigest()
        _require(hmac.compare_digest(value.lower(), body_hash), "the request body differs")
    else:
        raise CredentialError(401, "invalid_caveat", f"unknown caveat condition {condition!r}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CredentialError(401, "token_out_of_scope", message)


def challenge_header(macaroon: str, bolt11: str) -> str:
    """Both challenges in one WWW-Authenticate value (RFC 9110 allows a list), L402 first:
    Django cannot send a header twice, and clients find the first one they know."""
    return ", ".join(f'{scheme} macaroon="{macaroon}", invoice="{bolt11}"' for scheme in SCHEMES)
