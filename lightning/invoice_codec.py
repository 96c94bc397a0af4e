"""Minting real BOLT11 invoices for the nodes we run ourselves (the dev node and the
simulated LND): signed with a node key, decodable by any BOLT11 decoder."""

from __future__ import annotations

import base64
import functools
import operator
import os
import secrets
import time
from pathlib import Path

import bolt11
from bolt11.models.features import Feature, Features, FeatureState
from bolt11.utils import msat_to_amount
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
    description_hash: str = "",
) -> str:
    """A BOLT11 string with the tags LND puts in its invoices.

    Built directly in 5-bit words rather than through the bolt11 library's bitstring
    encoder, which cost milliseconds per invoice (the dev node's hot path when creating
    checkouts); the output is byte-for-byte what `bolt11.encode` makes for these tags.
    """
    hrp = "ln" + NETWORK_CURRENCY[network] + (msat_to_amount(amount_msat) if amount_msat else "")
    data = _int_words(created_at, 7)  # 35-bit timestamp
    data += _tagged(_TAG_PAYMENT_HASH, _bytes_words(bytes.fromhex(payment_hash)))
    data += _tagged(_TAG_PAYMENT_SECRET, _bytes_words(bytes.fromhex(payment_addr)))
    if description_hash:  # BOLT11: a hash of the description instead of the description
        data += _tagged(_TAG_DESCRIPTION_HASH, _bytes_words(bytes.fromhex(description_hash)))
    else:
        data += _tagged(_TAG_DESCRIPTION, _bytes_words(memo.encode()))
    data += _tagged(_TAG_EXPIRY, _minimal_int_words(expiry_seconds))
    data += _tagged(_TAG_MIN_FINAL_CLTV, _minimal_int_words(MIN_FINAL_CLTV_EXPIRY))
    data += _tagged(_TAG_FEATURES, _FEATURE_WORDS)
    # Signed: sha256 of the hrp's bytes and the data words packed into zero-padded bytes.
    signature = key.sign_recoverable(hrp.encode() + _words_bytes(data))  # r|s|recovery id
    return _bech32(hrp, data + _bytes_words(signature))


_BECH32 = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_TAG_PAYMENT_HASH, _TAG_PAYMENT_SECRET, _TAG_DESCRIPTION = (_BECH32.index(c) for c in b"psd")
_TAG_EXPIRY, _TAG_MIN_FINAL_CLTV, _TAG_FEATURES = (_BECH32.index(c) for c in b"xc9")
_TAG_DESCRIPTION_HASH = _BECH32.index(b"h")
_BASE32_TO_WORDS = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", bytes(range(32)))
_WORDS_TO_BECH32 = bytes.maketrans(bytes(range(32)), _BECH32)


def _bytes_words(data: bytes) -> list[int]:
    """Bytes as 5-bit words, zero-padded at the end (base32 does exactly this, in C)."""
    return list(base64.b32encode(data).rstrip(b"=").translate(_BASE32_TO_WORDS))


def _int_words(value: int, count: int) -> list[int]:
    return [(value >> (5 * i)) & 31 for i in reversed(range(count))]


def _minimal_int_words(value: int) -> list[int]:
    return _int_words(value, max(1, (value.bit_length() + 4) // 5))


def _tagged(tag: int, words: list[int]) -> list[int]:
    return [tag, len(words) >> 5, len(words) & 31, *words]


def _words_bytes(words: list[int]) -> bytes:
    value = 0
    for word in words:
        value = (value << 5) | word
    bits = 5 * len(words)
    pad = -bits % 8
    return (value << pad).to_bytes((bits + pad) // 8, "big")


def _features_words() -> list[int]:
    bits = Features.from_feature_list(
        {
            Feature.var_onion_optin: FeatureState.required,
            Feature.payment_secret: FeatureState.required,
        }
    ).data
    return _int_words(bits.uint << (-bits.len % 5), (bits.len + 4) // 5)


_FEATURE_WORDS = _features_words()

# BIP-173 checksum, with the generator folded into a table per top 5 bits of the state.
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_POLYMOD_TABLE = [
    functools.reduce(operator.xor, (g for i, g in enumerate(_BECH32_GENERATOR) if top >> i & 1), 0)
    for top in range(32)
]


def _bech32(hrp: str, data: list[int]) -> str:
    check = 1
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    for word in expanded + data + [0] * 6:
        check = ((check & 0x1FFFFFF) << 5) ^ word ^ _POLYMOD_TABLE[check >> 25]
    check ^= 1
    checksum = [(check >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + bytes(data + checksum).translate(_WORDS_TO_BECH32).decode()


def normalize(payment_request: str) -> str:
    """A BOLT11 string as decoders read it: no `lightning:` prefix, lower case."""
    return payment_request.strip().removeprefix("lightning:").lower()


_WORD = {c: i for i, c in enumerate(_BECH32.decode())}


def payment_hash_of(payment_request: str) -> str | None:
    """The payment hash tag of a BOLT11 string, read without checking its checksum or
    signature (None when it cannot be read): a key to look an invoice up by, which costs
    microseconds where `decode_invoice` costs milliseconds. Trust it only for an invoice
    found to be byte for byte one that we made."""
    hrp, _, data = normalize(payment_request).rpartition("1")
    try:
        words = [_WORD[c] for c in data]
    except KeyError:
        return None
    end = len(words) - 104 - 6  # the signature (104 words) and the checksum (6)
    i = 7  # after the timestamp
    while hrp and i + 3 <= end:
        tag, length = words[i], words[i + 1] << 5 | words[i + 2]
        i += 3
        if tag == _TAG_PAYMENT_HASH and length == 52 and i + length <= end:
            return (_words_int(words[i : i + 52]) >> 4).to_bytes(32, "big").hex()
        i += length
    return None


def _words_int(words: list[int]) -> int:
    value = 0
    for word in words:
        value = (value << 5) | word
    return value


def decode_invoice(payment_request: str) -> bolt11.Bolt11:
    """Decode and verify the signature; raises ValueError on anything malformed."""
    try:
        return bolt11.decode(normalize(payment_request))
    except Exception as exc:  # the library raises many unrelated types
        raise ValueError(f"not a valid BOLT11 invoice: {exc}") from exc


def now() -> int:
    return int(time.time())
