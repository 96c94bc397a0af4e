"""The dev node's fast BOLT11 encoder (the checkout create hot path) makes exactly what the
bolt11 library's encoder makes, and invoices any decoder reads back correctly."""

import random
import secrets

import bolt11
import pytest
from bolt11.models.features import Feature, Features, FeatureState
from bolt11.models.tags import Tag, TagChar, Tags
from coincurve import PrivateKey

from lightning import invoice_codec

MEMOS = ["", "Espresso beans 250 g", "ünïcødé ☕ " * 20, "x" * 639]


def library_encode(
    key, network, payment_hash, payment_addr, amount_msat, memo, created_at, expiry_seconds
):
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
            Tag(TagChar.min_final_cltv_expiry, invoice_codec.MIN_FINAL_CLTV_EXPIRY),
            Tag(TagChar.features, features),
        ]
    )
    invoice = bolt11.Bolt11(
        currency=invoice_codec.NETWORK_CURRENCY[network],
        date=created_at,
        tags=tags,
        amount_msat=bolt11.MilliSatoshi(amount_msat) if amount_msat else None,
    )
    return bolt11.encode(invoice, key.secret.hex())


@pytest.mark.parametrize("seed", range(40))
def test_fast_encoder_matches_the_library_and_decodes(seed):
    rng = random.Random(seed)
    key = PrivateKey(rng.randbytes(32))
    fields = dict(
        network=rng.choice(list(invoice_codec.NETWORK_CURRENCY)),
        payment_hash=rng.randbytes(32).hex(),
        payment_addr=secrets.token_hex(32),
        amount_msat=rng.choice([0, 1000, 12_340_000, 10**11, rng.randrange(1, 10**15) * 1000]),
        memo=rng.choice(MEMOS),
        created_at=rng.randrange(1_600_000_000, 2_000_000_000),
        expiry_seconds=rng.choice([1, 60, 900, 86400, 2_592_000]),
    )
    encoded = invoice_codec.encode_invoice(key, **fields)
    assert encoded == library_encode(key, **fields)
    decoded = invoice_codec.decode_invoice(encoded)
    assert decoded.payment_hash == fields["payment_hash"]
    assert (decoded.amount_msat or 0) == fields["amount_msat"]
    assert decoded.description == fields["memo"]
    assert decoded.date == fields["created_at"]
    assert decoded.expiry_time - decoded.date == fields["expiry_seconds"]
    assert decoded.payee == invoice_codec.node_pubkey(key)
    # The dev node looks its own invoices up by this, instead of decoding them.
    assert invoice_codec.payment_hash_of(encoded) == fields["payment_hash"]
    assert invoice_codec.payment_hash_of("lightning:" + encoded.upper()) == fields["payment_hash"]
