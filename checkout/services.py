"""Merchant, key, product and checkout rules."""

import hashlib
import json
import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from config.prepared import insert
from config.problems import Problem
from lightning import services as lightning_services
from lightning.backends.base import NodeError
from wallets import services as wallets

from . import rates
from .events import emit_checkout_event
from .models import ApiKey, CheckoutInvoice, IdempotencyKey, Merchant, Product

# lightning.Invoice.purpose of the invoices checkouts sell.
PURPOSE = "checkout"

DEFAULT_EXPIRY_SECONDS = 900
# Amounts are stored with 18 digits, 2 of them decimals.
MAX_AMOUNT = Decimal(10**16)

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


# --- Products --------------------------------------------------------------------------


def create_product(merchant: Merchant, **fields) -> Product:
    return Product.objects.create(merchant=merchant, **fields)


def update_product(product: Product, **fields) -> Product:
    for name, value in fields.items():
        setattr(product, name, value)
    product.save(update_fields=[*fields, "updated_at"])
    return product


def remove_product(product: Product) -> str:
    """Delete a product, or archive it when checkouts point at it (they keep their record of
    what was sold). Archived products are gone from the API and cannot be bought.
    Returns "deleted" or "archived"."""
    try:
        with transaction.atomic():
            product.delete()
        return "deleted"
    except ProtectedError:
        Product.objects.filter(pk=product.pk).update(
            archived=True, active=False, updated_at=timezone.now()
        )
        return "archived"


# --- Checkout invoices -----------------------------------------------------------------

# A BOLT11 description holds at most 639 bytes.
MAX_MEMO_BYTES = 639
# After how long an unfinished reservation (its request crashed) may be taken over.
IDEMPOTENCY_STALE_AFTER = timedelta(seconds=60)


def create_checkout_invoice(
    merchant: Merchant, terms: dict, idempotency_key: str | None = None
) -> tuple[CheckoutInvoice, bool]:
    """A checkout and its Lightning invoice, from the validated `terms` of a create request
    (product_id + quantity, or amount + currency, and the optional fields).

    With an `idempotency_key`, a retry returns the checkout of the first request with that
    key instead of making another. Returns (checkout, whether this call created it).
    """
    if idempotency_key is None:
        return _create_checkout(merchant, _product_in(merchant, terms), terms), True
    return _create_checkout_once(merchant, terms, idempotency_key)


def start_product_checkout(product_id: str, terms: dict) -> CheckoutInvoice:
    """A keyless checkout of an active product (a payment link used from a storefront)."""
    product = (
        Product.objects.select_related("merchant")
        .filter(public_id=product_id, active=True, archived=False)
        .first()
    )
    if product is None:
        raise Problem(404, "not_found", f"No product {product_id} is for sale.")
    return _create_checkout(product.merchant, product, terms)


def _product_in(merchant: Merchant, terms: dict) -> Product | None:
    return _product_to_sell(merchant, terms["product_id"]) if terms.get("product_id") else None


def _product_to_sell(merchant: Merchant, product_id: str) -> Product:
    product = Product.objects.filter(
        merchant=merchant, public_id=product_id, archived=False
    ).first()
    if product is None:
        # A reference to no product of this merchant: a 404 (as for the keyless checkout),
        # naming the field.
        raise Problem(
            404,
            "not_found",
            f"productId: no product {product_id}.",
            {"productId": [f"No product {product_id}."]},
        )
    if not product.active:
        raise Problem(409, "product_inactive", f"Product {product_id} is not active.")
    return product


def _price(product: Product | None, terms: dict) -> tuple[Decimal, str, int]:
    if product is not None:
        amount = product.price * terms.get("quantity", 1)
        currency = product.currency
    else:
        amount, currency = terms["amount"], terms["currency"]
    if amount >= MAX_AMOUNT:
        raise Problem(
            400, "amount_too_large", f"The amount {amount} {currency} is too large.", None
        )
    return amount, currency, terms.get("quantity", 1)


def _create_checkout(
    merchant: Merchant,
    product: Product | None,
    terms: dict,
    reservation: IdempotencyKey | None = None,
) -> CheckoutInvoice:
    amount, currency, quantity = _price(product, terms)
    try:
        quote = rates.sats_for(amount, currency)
    except rates.RateUnavailable as exc:
        raise Problem(
            503, "rate_unavailable", f"No {currency} exchange rate is available: {exc}"
        ) from exc
    if quote.sats > settings.CHECKOUT_MAX_INVOICE_SATS:
        raise Problem(
            400,
            "amount_too_large",
            f"{amount} {currency} is {quote.sats} sats, more than the largest invoice this "
            f"gateway makes ({settings.CHECKOUT_MAX_INVOICE_SATS} sats).",
        )
    description = terms.get("description") or (product.name if product else "")

    def record(invoice):
        checkout = insert(
            CheckoutInvoice(
                merchant=merchant,
                invoice=invoice,
                product=product,
                quantity=quantity,
                amount=amount,
                currency=currency,
                sats_amount=quote.sats,
                rate=quote.rate,
                rate_source=quote.source,
                description=description,
                user_ref=terms.get("user_ref", ""),
                email=terms.get("email", ""),
                send_email=terms.get("send_email", False),
                redirect_url=terms.get("redirect_url", ""),
                webhook_url=terms.get("webhook_url", ""),
                metadata=terms.get("metadata") or {},
                refund_address=terms.get("refund_address", ""),
                idempotency_key=reservation.key if reservation else None,
            )
        )
        if reservation is not None:
            IdempotencyKey.objects.filter(pk=reservation.pk).update(checkout_invoice=checkout)
        wallets.follow_invoice(invoice, merchant)
        emit_checkout_event(checkout, "invoice.created")
        return checkout

    try:
        # The node first, then the Invoice, the checkout and its event in one short
        # transaction: no Invoice without its checkout, and no lock held across the call.
        return lightning_services.create_invoice(
            quote.sats * 1000,
            _memo(description),
            terms.get(
                "expires_in_seconds", merchant.default_expiry_seconds or DEFAULT_EXPIRY_SECONDS
            ),
            purpose=PURPOSE,
            then=record,
        )
    except NodeError as exc:
        raise Problem(503, "node_unavailable", f"The Lightning node did not answer: {exc}") from exc


def _memo(description: str) -> str:
    return description.encode()[:MAX_MEMO_BYTES].decode(errors="ignore")


def request_fingerprint(terms: dict) -> str:
    """What an Idempotency-Key is bound to: a retry must send the same request."""
    return hashlib.sha256(json.dumps(terms, sort_keys=True, default=str).encode()).hexdigest()


def _create_checkout_once(
    merchant: Merchant, terms: dict, key: str
) -> tuple[CheckoutInvoice, bool]:
    """Reserve the key in its own committed row first, then ask the node: of concurrent
    requests with one key, one wins the row and makes the invoice; the others are told at
    once that it is in progress (409, as Stripe does), never kept waiting in a web thread."""
    request_hash = request_fingerprint(terms)
    reservation = None
    for _ in range(3):  # a released or stale key is taken on the next turn
        try:
            with transaction.atomic():
                reservation = IdempotencyKey.objects.create(
                    merchant=merchant, key=key, request_hash=request_hash
                )
            break
        except IntegrityError:
            pass
        earlier = IdempotencyKey.objects.filter(merchant=merchant, key=key).first()
        if earlier is None:
            continue  # the first request failed and released the key: try to take it
        if earlier.request_hash != request_hash:
            raise Problem(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request body; "
                "use a new key for a new invoice.",
            )
        if earlier.checkout_invoice_id is not None:
            return _checkout_with_invoice(earlier.checkout_invoice_id), False
        if earlier.created_at >= timezone.now() - IDEMPOTENCY_STALE_AFTER:
            raise Problem(
                409,
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                headers={"Retry-After": "1"},
            )
        # Its request died before finishing: take the reservation over, if nobody else
        # did in the meantime (the row count says whether this request won it).
        taken = IdempotencyKey.objects.filter(
            pk=earlier.pk, created_at=earlier.created_at, checkout_invoice__isnull=True
        ).update(created_at=timezone.now())
        if taken:
            reservation = earlier
            break
    if reservation is None:
        raise Problem(
            409,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )
    try:
        # The product is looked up only now: a retry gets the first answer even if the
        # product was deactivated since.
        return _create_checkout(merchant, _product_in(merchant, terms), terms, reservation), True
    except BaseException:
        IdempotencyKey.objects.filter(pk=reservation.pk, checkout_invoice__isnull=True).delete()
        raise


def _checkout_with_invoice(pk: int) -> CheckoutInvoice:
    return CheckoutInvoice.objects.select_related("invoice", "product").get(pk=pk)
