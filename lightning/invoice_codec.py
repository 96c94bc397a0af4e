"""Minting real BOLT11 invoices for the nodes we run ourselves (the dev node and the
simulated LND): signed with a node key, decodable by any BOLT11 decoder."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import bolt11
from bolt11.models.features import Feature, Features, FeatureState
from bolt11.models.tags import Tag, TagChar, Tags
from coincurve import PrivateKey

NETWORK_CURRENCY = {"regtest": "bcrt", "testnet": "tb", "signet": "tbs", "mainnet": "bc"}
MIN_FINAL_CLTV_EXPIRY = 80


def load_or_create_key(path: Path) -> PrivateKey:
    """The node's secp256k1 key, generated once and kept (mode 0600) at `path`."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(PrivateKey().secret.hex())
        try:
            os.link(tmp, path)  # atomic: if two processes race, the first key wins
        except FileExistsError:
            pass
        os.unlink(tmp)
    return PrivateKey(bytes.fromhex(path.read_text().strip()))


def node_pubkey(key: PrivateKey) -> str:
    return key.public_key.format(compressed=True).hex()


def encode_invoice(
    key: PrivateKey,
    *,
    network: str,
    payment_hash: str,
    payment_addr: str,
    amount_msat: int,
    memo: str,
    created_at: int,
    expiry_seconds: int,
) -> str:
    """A BOLT11 string with the tags LND puts in its invoices."""
    features = Features.from_feature_list(
        {
            Feature.var_onion_optin: FeatureState.required,
            Feature.payment_secret: FeatureState.required,
        }
    )
    tags = Tags(
        [
            Tag(TagChar.payment_hash, payment_hash),
            Tag(TagChar.payment_secret, payment_addr),
            Tag(TagChar.description, memo),
            Tag(TagChar.expire_time, expiry_seconds),
            Tag(TagChar.min_final_cltv_expiry, MIN_FINAL_CLTV_EXPIRY),
            Tag(TagChar.features, features),
        ]
    )
    invoice = bolt11.Bolt11(
        currency=NETWORK_CURRENCY[network],
        date=created_at,
        tags=tags,
        amount_msat=bolt11.MilliSatoshi(amount_msat) if amount_msat else None,
    )
    return bolt11.encode(invoice, key.secret.hex())


def decode_invoice(payment_request: str) -> bolt11.Bolt11:
    """Decode and verify the signature; raises ValueError on anything malformed."""
    try:
        return bolt11.decode(payment_request.strip().removeprefix("lightning:").lower())
    except Exception as exc:  # the library raises many unrelated types
        raise ValueError(f"not a valid BOLT11 invoice: {exc}") from exc


def now() -> int:
    return int(time.time())
