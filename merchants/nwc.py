"""Nostr Wallet Connect (NIP-47) connection URIs: parsed and checked, never trusted as text.

`nostr+walletconnect://<wallet service pubkey>?relay=<wss://...>&secret=<hex>[&lud16=...]`:
the pubkey is the wallet service's x-only key, each `relay` a websocket URL the service
listens on, `secret` the 32-byte key the client signs its requests with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from coincurve import PrivateKey

from agents import nostr

SCHEMES = ("nostr+walletconnect", "nostrwalletconnect")
MAX_LENGTH = 2000
LUD16 = re.compile(r"[a-z0-9_.+-]+@[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


class InvalidConnection(ValueError):
    """The string is not a NIP-47 connection URI; the message says what is wrong."""


@dataclass(frozen=True)
class Connection:
    wallet_pubkey: str
    relays: tuple[str, ...]
    secret: str
    lud16: str


def parse(uri: str) -> Connection:
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidConnection("the connection string is empty")
    uri = uri.strip()
    if len(uri) > MAX_LENGTH:
        raise InvalidConnection(f"the connection string is longer than {MAX_LENGTH} characters")
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in SCHEMES:
        raise InvalidConnection("it must start with nostr+walletconnect://")
    rest = rest.removeprefix("//")
    pubkey, _, query = rest.partition("?")
    pubkey = pubkey.rstrip("/").lower()
    try:
        nostr.public_key(pubkey)
    except nostr.NostrError as exc:
        raise InvalidConnection(f"the wallet service pubkey: {exc.detail}") from None
    params = parse_qs(query, keep_blank_values=True)
    relays = tuple(dict.fromkeys(params.get("relay", [])))
    if not relays:
        raise InvalidConnection("it names no relay (relay=wss://...)")
    for relay in relays:
        parts = urlsplit(relay)
        if parts.scheme not in ("wss", "ws") or not parts.hostname:
            raise InvalidConnection(f"the relay {relay!r} is not a ws:// or wss:// URL")
    secrets = params.get("secret", [])
    if len(secrets) != 1:
        raise InvalidConnection("it must carry exactly one secret (secret=<64 hex>)")
    secret = secrets[0].lower()
    try:
        PrivateKey(nostr.parse_hex(secret, 32, "secret"))
    except nostr.NostrError as exc:
        raise InvalidConnection(exc.detail) from None
    except ValueError:
        raise InvalidConnection("the secret is not a valid secp256k1 private key") from None
    lud16 = unquote(params.get("lud16", [""])[0]).strip()
    if lud16 and not LUD16.fullmatch(lud16):
        raise InvalidConnection(f"lud16 {lud16!r} is not a lightning address (name@domain)")
    return Connection(wallet_pubkey=pubkey, relays=relays, secret=secret, lud16=lud16)
