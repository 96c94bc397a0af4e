"""Merchant and key rules."""

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from .models import ApiKey, Merchant, Product

KEY_PREFIXES = {ApiKey.Kind.ADMIN: "zg_admin_", ApiKey.Kind.INVOICE: "zg_inv_"}


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def issue_api_key(merchant: Merchant, kind: str, name: str) -> tuple[ApiKey, str]:
    """Make a key. Returns the row and the key itself, which is not stored anywhere."""
    raw = KEY_PREFIXES[kind] + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        merchant=merchant, name=name, kind=kind, prefix=raw[:14], key_hash=hash_key(raw)
    )
    return key, raw


def revoke_api_key(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


@transaction.atomic
def create_merchant(name: str, email: str = "") -> tuple[Merchant, str]:
    """A merchant with its first admin key. Returns the merchant and that key."""
    merchant = Merchant.objects.create(name=name, email=email)
    _, raw = issue_api_key(merchant, ApiKey.Kind.ADMIN, "Admin key")
    return merchant, raw


DEMO_MERCHANT = "Demo Coffee Roasters"
DEMO_PRODUCTS = [
    ("Espresso beans 250 g", "Dark roast, notes of cocoa.", "12.50", "USD"),
    ("Filter coffee 1 kg", "Light roast for pour-over.", "29.00", "EUR"),
    ("Sticker pack", "Five Lightning stickers.", "2100", "SAT"),
]
DEMO_KEY_NAME = "make run demo key"


@transaction.atomic
def seed_demo() -> tuple[Merchant, str]:
    """The demo merchant and its products (made once), and a fresh demo admin key.

    Keys are stored hashed, so the previous run's key cannot be shown again: each run
    revokes it and issues a new one.
    """
    merchant, _ = Merchant.objects.get_or_create(
        name=DEMO_MERCHANT, defaults={"email": "demo@example.com"}
    )
    for name, description, price, currency in DEMO_PRODUCTS:
        Product.objects.get_or_create(
            merchant=merchant,
            name=name,
            defaults={"description": description, "price": price, "currency": currency},
        )
    ApiKey.objects.filter(merchant=merchant, name=DEMO_KEY_NAME, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    _, raw = issue_api_key(merchant, ApiKey.Kind.ADMIN, DEMO_KEY_NAME)
    return merchant, raw
