"""Keys, BIP-340 signatures and NIP-01 events: the few Nostr rules the registry relies on.

Pure functions, no database: each raises `NostrError` with a stable `error` slug that the
caller turns into a problem response.
"""

import hashlib
import json
import re

from coincurve import PublicKeyXOnly

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")


class NostrError(ValueError):
    def __init__(self, error: str, detail: str):
        self.error = error
        self.detail = detail
        super().__init__(detail)


def parse_hex(value, length: int, what: str) -> bytes:
    """Lower-case hex of exactly `length` bytes, else `malformed_hex`."""
    if not isinstance(value, str) or len(value) != 2 * length:
        raise NostrError("malformed_hex", f"{what} must be {2 * length} hex characters.")
    if not re.fullmatch(r"[0-9a-fA-F]*", value):
        raise NostrError("malformed_hex", f"{what} must be hex (0-9, a-f).")
    return bytes.fromhex(value)


def public_key(pubkey_hex: str) -> PublicKeyXOnly:
    """The x-only key, if the 32 bytes are the x coordinate of a point on secp256k1."""
    raw = parse_hex(pubkey_hex, 32, "pubkey")
    try:
        return PublicKeyXOnly(raw)
    except ValueError:
        raise NostrError("invalid_pubkey", "pubkey is not a point on secp256k1.") from None


def schnorr_valid(pubkey_hex: str, signature_hex: str, message: bytes) -> bool:
    """BIP-340: does `signature_hex` sign `message` with `pubkey_hex`?"""
    key = public_key(pubkey_hex)
    signature = parse_hex(signature_hex, 64, "signature")
    try:
        return key.verify(signature, message)
    except (ValueError, TypeError):
        return False


def event_id(pubkey: str, created_at: int, kind: int, tags: list, content: str) -> str:
    """NIP-01: sha256 of `[0, pubkey, created_at, kind, tags, content]` as compact UTF-8 JSON."""
    serialized = json.dumps(
        [0, pubkey, created_at, kind, tags, content], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(serialized.encode()).hexdigest()


def canonical_id(item: dict) -> str:
    """A deterministic id for an item that came without a signed event."""
    serialized = json.dumps(item, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(serialized.encode()).hexdigest()


def verify_event(event) -> dict:
    """Check a NIP-01 event's shape, id and signature; return it. Raises `NostrError`."""
    if not isinstance(event, dict):
        raise NostrError("malformed_event", "The event must be a JSON object.")
    fields = {
        "id": str,
        "pubkey": str,
        "created_at": int,
        "kind": int,
        "tags": list,
        "content": str,
        "sig": str,
    }
    for name, kind in fields.items():
        value = event.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise NostrError("malformed_event", f"The event's `{name}` is missing or malformed.")
    tags = event["tags"]
    if not all(isinstance(t, list) and all(isinstance(v, str) for v in t) for t in tags):
        raise NostrError("malformed_event", "The event's tags must be lists of strings.")
    if not (0 <= event["created_at"] < 2**63 and 0 <= event["kind"] <= 65535):
        raise NostrError("malformed_event", "The event's created_at or kind is out of range.")
    if not HEX64.fullmatch(event["id"]) or not HEX128.fullmatch(event["sig"]):
        raise NostrError("malformed_event", "The event's id or sig is not lower-case hex.")
    if not HEX64.fullmatch(event["pubkey"]):
        raise NostrError("malformed_event", "The event's pubkey is not 64 lower-case hex.")
    expected = event_id(event["pubkey"], event["created_at"], event["kind"], tags, event["content"])
    if expected != event["id"]:
        raise NostrError("invalid_event_id", "The event's id is not the hash of its content.")
    try:
        valid = schnorr_valid(event["pubkey"], event["sig"], bytes.fromhex(event["id"]))
    except NostrError as error:
        raise NostrError("invalid_event_signature", error.detail) from None
    if not valid:
        raise NostrError("invalid_event_signature", "The event's signature does not verify.")
    return event


def tag_value(event: dict, name: str):
    """The first value of the first tag called `name`, or None."""
    for tag in event["tags"]:
        if len(tag) >= 2 and tag[0] == name:
            return tag[1]
    return None
