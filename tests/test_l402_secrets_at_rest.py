"""What a database read yields: no working L402 credential. The paid invoices' preimages
are there (the node layer keeps them), so the tokens must not be: a challenge keeps its
token's id and caveats, and only the server secret signs them again. Also the data
migrations that brought existing rows to this shape."""

import base64
import hashlib
import hmac
import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.test import Client
from pymacaroons import MACAROON_V2, Macaroon
from pymacaroons.serializers.binary_serializer import BinarySerializer

from checkout.services import create_merchant
from l402 import macaroons
from l402.models import L402Challenge, OneTimeKey
from lightning import services as lightning
from lightning.backends import get_backend
from lightning.models import Invoice

from .l402_support import decode_v2

pytestmark = pytest.mark.django_db


def settle(bolt11: str) -> str:
    """Pay as the buyer's wallet, recorded as the watcher would; returns the preimage."""
    payment = get_backend().pay_invoice(bolt11)
    lightning.apply_settlements([get_backend().lookup_invoice(payment.payment_hash)])
    return payment.preimage


def sell_everything(client, upstream) -> tuple[list[tuple[str, str]], list[str]]:
    """Paid tokens of each kind and a paid one-time key: (macaroon, preimage) pairs and the
    raw keys, as their buyers hold them."""
    _, key = create_merchant("Shop")
    headers = {"HTTP_X_API_KEY": key}
    proxy = client.post(
        "/api/proxy",
        {"name": "Data", "targetBaseUrl": upstream.url, "defaultPriceSats": 3},
        content_type="application/json",
        **headers,
    ).json()
    challenges = [
        client.post(
            "/api/l402/challenges",
            {"resource": "report", "priceSats": 7},
            content_type="application/json",
            **headers,
        ).json(),
        client.get("/api/l402/demo").json(),
        client.get(f"/l402/proxy/{proxy['proxyId']}/rows").json(),
    ]
    tokens = [(c["macaroon"], settle(c["invoice"])) for c in challenges]
    bought = client.post(
        "/api/invoice",
        {"proxyId": proxy["proxyId"], "method": "GET", "path": "/rows"},
        content_type="application/json",
    ).json()
    settle(bought["paymentRequest"])
    return tokens, [bought["apikey"]]


def database_read() -> list[dict]:
    """Every column of every challenge, one-time key and invoice row."""
    return [
        *L402Challenge.objects.values(),
        *OneTimeKey.objects.values(),
        *Invoice.objects.values(),
    ]


def encodings(secret: bytes) -> list[str]:
    urlsafe = base64.urlsafe_b64encode(secret).decode()
    return [secret.hex(), base64.b64encode(secret).decode(), urlsafe, urlsafe.rstrip("=")]


def test_a_database_read_yields_no_working_credential(upstream):
    client = Client()
    tokens, keys = sell_everything(client, upstream)
    for macaroon, preimage in tokens:
        macaroons.verify(macaroon, preimage)  # what the buyers hold works
    rows = database_read()
    text = json.dumps(rows, default=str)
    preimages = {row["preimage"] for row in rows if row.get("preimage")}
    assert len(preimages) == 4  # the worst case: every paid preimage is in the database

    # Neither the tokens, nor their signatures, nor their root keys are stored.
    for macaroon, _ in tokens:
        raw = base64.b64decode(macaroon)
        decoded = decode_v2(raw)
        root = macaroons.root_key(decoded["identifier"][34:])
        for secret in (raw, decoded["signature"], root):
            for encoded in encodings(secret):
                assert encoded not in text
    for raw_key in keys:
        assert raw_key not in text and raw_key.removeprefix("otk_") not in text

    # Assemble what one could from the read: any stored string read as a token, and every
    # stored token id and caveats signed with every 32-byte value read (as the root key, or
    # as the server secret). With any preimage read, none is a valid credential.
    strings = [value for row in rows for value in row.values() if isinstance(value, str)]
    keys_read = {bytes.fromhex(s) for s in strings if len(s) == 64 and _is_hex(s)}
    candidates = list(strings)
    for row in L402Challenge.objects.select_related("invoice"):
        identifier = b"\x00\x00" + bytes.fromhex(row.invoice.payment_hash)
        identifier += bytes.fromhex(row.token_id)
        token_id = identifier[34:]
        for key in keys_read:
            for root in (key, hmac.new(key, token_id, hashlib.sha256).digest()):
                candidates.append(_sign(identifier, row.caveats, root))
    assert len(candidates) > 100
    for candidate in candidates:
        for preimage in preimages:
            with pytest.raises(macaroons.CredentialError):
                macaroons.verify(candidate, preimage)

    # With the server secret the stored parts are exactly the tokens that were sold (an
    # idempotent retry shows the same token again).
    assert sorted(c.macaroon for c in L402Challenge.objects.all()) == sorted(t for t, _ in tokens)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _sign(identifier: bytes, caveats: list[str], root: bytes) -> str:
    """A macaroon signed by pymacaroons, as anyone holding `root` could make it."""
    mac = Macaroon(location="zapgate", identifier=identifier, key=root, version=MACAROON_V2)
    for caveat in caveats:
        mac.add_first_party_caveat(caveat)
    return base64.b64encode(BinarySerializer().serialize_raw(mac)).decode()


def test_an_idempotent_retry_shows_the_same_token():
    client = Client()
    _, key = create_merchant("Shop")
    made = [
        client.post(
            "/api/l402/challenges",
            {"resource": "r", "priceSats": 2},
            content_type="application/json",
            HTTP_X_IDEMPOTENCY_KEY="once",
            HTTP_X_API_KEY=key,
        ).json()
        for _ in range(2)
    ]
    assert made[0]["macaroon"] == made[1]["macaroon"]
    assert made[0]["paymentHash"] == made[1]["paymentHash"]


# --- the data migrations ---------------------------------------------------------------------


def _latest(app: str) -> tuple[str, str]:
    return next(node for node in MigrationLoader(connection).graph.leaf_nodes() if node[0] == app)


def _migrate(target):
    """Migrate `target`'s app to `target`; the models as they are then (the other apps at
    their latest, but for those whose migrations need a later state of `target`'s app, such
    as wallets' data migration: left out). Migrating forward to the app's latest also brings
    back what migrating it backward had unapplied."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    graph = executor.loader.graph
    if target in graph.leaf_nodes():
        executor.migrate(graph.leaf_nodes())
        executor.loader.build_graph()
        graph = executor.loader.graph
    reached = set(graph.forwards_plan(target))
    others = [
        node
        for node in graph.leaf_nodes()
        if node[0] != target[0]
        and not any(a[0] == target[0] and a not in reached for a in graph.forwards_plan(node))
    ]
    return executor.loader.project_state([*others, target]).apps


@pytest.mark.django_db(transaction=True)
def test_existing_rows_are_brought_to_the_new_shape():
    """Rows as 0003 stored them: a challenge with its full token, a one-time key with only
    its proxy. After the migrations: the token's parts, the key's own merchant and proxy id."""
    apps = _migrate(("l402", "0003_price_bounds"))
    merchant = apps.get_model("checkout", "Merchant").objects.create(
        public_id="mch_old", name="Old shop"
    )
    invoice_model = apps.get_model("lightning", "Invoice")

    def invoice(payment_hash):
        return invoice_model.objects.create(
            payment_hash=payment_hash,
            bolt11="lnbcrt1...",
            amount_msat=5000,
            created_at="2026-01-01T00:00:00Z",
            expires_at="2026-01-01T00:15:00Z",
            backend="devnode",
        )

    payment_hash = "ab" * 32
    token = macaroons.mint(payment_hash, [("merchant", "mch_old"), ("resource", "a=b")])
    apps.get_model("l402", "L402Challenge").objects.create(
        merchant=merchant,
        invoice=invoice(payment_hash),
        kind="resource",
        resource="a=b",
        price_sats=5,
        macaroon=token,
    )
    proxy = apps.get_model("l402", "Proxy").objects.create(
        merchant=merchant,
        proxy_id="old-proxy-1",
        name="Old",
        target_base_url="https://api.example.com",
        default_price_sats=5,
    )
    apps.get_model("l402", "OneTimeKey").objects.create(
        proxy=proxy,
        key_hash="c" * 64,
        invoice=invoice("cd" * 32),
        method="GET",
        path="/x",
        body_sha256="e" * 64,
        price_sats=5,
    )

    _migrate(_latest("l402"))  # the current models are used below
    challenge = L402Challenge.objects.select_related("invoice").get()
    assert challenge.caveats == ["merchant=mch_old", "resource=a=b"]
    assert challenge.macaroon == token  # made again, byte for byte
    assert not any(token in str(value) for value in L402Challenge.objects.values().get().values())
    key = OneTimeKey.objects.get()
    assert (key.merchant.public_id, key.proxy_public_id) == ("mch_old", "old-proxy-1")
    key.proxy.delete()
    assert OneTimeKey.objects.get().proxy is None


@pytest.mark.django_db(transaction=True)
def test_existing_shopify_orders_keep_the_parts_of_their_token():
    apps = _migrate(("shopify_bridge", "0001_initial"))
    merchant = apps.get_model("checkout", "Merchant").objects.create(
        public_id="mch_shop", name="Old shop"
    )
    store = apps.get_model("shopify_bridge", "ShopifyStore").objects.create(
        merchant=merchant, slug="old", name="Old", shop_domain="old.myshopify.com"
    )
    payment_hash = "ef" * 32
    invoice = apps.get_model("lightning", "Invoice").objects.create(
        payment_hash=payment_hash,
        bolt11="lnbcrt1...",
        amount_msat=5000,
        created_at="2026-01-01T00:00:00Z",
        expires_at="2026-01-01T00:15:00Z",
        backend="devnode",
    )
    token = macaroons.mint(payment_hash, [("merchant", "mch_shop"), ("resource", "shopify:x")])
    apps.get_model("shopify_bridge", "ShopifyOrder").objects.create(
        public_id="shpfy_old",
        store=store,
        invoice=invoice,
        subtotal_usd=1,
        shipping_usd=0,
        total_usd=1,
        amount_sats=5,
        macaroon=token,
        claim_token_hash="f" * 64,
    )

    _migrate(("shopify_bridge", "0003_remove_shopifyorder_macaroon"))
    from shopify_bridge.models import ShopifyOrder

    order = ShopifyOrder.objects.select_related("invoice").get()
    assert order.caveats == ["merchant=mch_shop", "resource=shopify:x"]
    assert order.macaroon == token
    assert not any(token in str(value) for value in ShopifyOrder.objects.values().get().values())
