"""The rules of Shopify orders: stores, cart checkout (paid by L402), payment, claims,
fulfilment from Shopify's webhooks, and stats. Pushing orders to Shopify is in `push`.

Order states move only by conditional UPDATEs (`... WHERE status = <from>`), each in the
transaction that also writes its webhook event, so a replayed payment, a double claim or
a repeated Shopify webhook changes nothing twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import string
from collections import defaultdict
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from checkout import rates
from config.problems import Problem
from l402 import macaroons
from lightning import services as lightning_services
from lightning.backends.base import NodeError
from lightning.models import Invoice
from wallets import services as wallets

from . import events
from .catalog import money
from .models import (
    ShopifyOrder,
    ShopifyOrderLine,
    ShopifyOrderPush,
    ShopifyStore,
    ShopifyVariant,
    _order_id,
)

log = logging.getLogger(__name__)
# lightning.Invoice.purpose of the invoices Shopify carts sell.
PURPOSE = "shopify"

Status = ShopifyOrder.Status

MAX_ITEMS = 10
MAX_QUANTITY = 10
MAX_UNITS = 10
CLAIM_TOKEN_LENGTH = 20  # base62: ~119 bits
BASE62 = string.digits + string.ascii_letters
# Paid orders whose money the merchant keeps (NeedsRefund is paid but goes back).
REVENUE_STATES = (Status.AWAITING_DETAILS, Status.PROCESSING, Status.PLACED, Status.SHIPPED)

INVALID_CLAIM = Problem(
    404,
    "invalid_claim_token",
    "This claim token is not valid for this store, or it has already been used.",
)


# --- stores ----------------------------------------------------------------------------


def store_for_public(slug: str) -> ShopifyStore:
    store = ShopifyStore.objects.select_related("merchant").filter(slug=slug, active=True).first()
    if store is None:
        raise Problem(404, "not_found", f"No Shopify store {slug}.")
    return store


def store_of_merchant(merchant, slug: str) -> ShopifyStore:
    store = ShopifyStore.objects.filter(merchant=merchant, slug=slug).first()
    if store is None:
        raise Problem(404, "not_found", f"No Shopify store {slug}.")
    return store


def create_store(merchant, **fields) -> ShopifyStore:
    if ShopifyStore.objects.filter(slug=fields["slug"]).exists():
        raise Problem(
            409,
            "slug_taken",
            f"The slug {fields['slug']} is taken; choose another.",
            {"slug": ["This slug is taken."]},
        )
    return ShopifyStore.objects.create(merchant=merchant, **fields)


def update_store(store: ShopifyStore, **fields) -> ShopifyStore:
    """Write only the fields given; answer the store as it now is. A full-row save would put
    back, from this copy, whatever changed since it was read (a sync's outcome, a pause)."""
    for name, value in fields.items():
        setattr(store, name, value)
    store.save(update_fields=[*fields, "updated_at"])
    store.refresh_from_db()
    return store


def delete_store(store: ShopifyStore) -> None:
    if store.orders.exists():
        raise Problem(
            409,
            "store_has_orders",
            "This store has orders, so it cannot be deleted; deactivate it instead.",
        )
    store.delete()


# --- checkout ----------------------------------------------------------------------------


def order_resource(order: ShopifyOrder) -> str:
    """The L402 resource caveat of an order's token."""
    return f"shopify:{order.store.slug}:{order.public_id}"


def _secret() -> bytes:
    return (settings.SHOPIFY_SECRETS_KEY or settings.SECRET_KEY).encode()


def claim_token(order_public_id: str) -> str:
    """The order's claim token, derived from a server secret so the payer can be handed it
    again (a retried L402 request, a reloaded page) while only its hash is stored."""
    digest = hmac.new(_secret(), f"shopify claim:{order_public_id}".encode(), "sha256").digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(CLAIM_TOKEN_LENGTH):
        number, index = divmod(number, 62)
        chars.append(BASE62[index])
    return "".join(chars)


def hash_claim_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def pay_page_key(order_public_id: str) -> str:
    """The secret part of an order's hosted payment page URL (which reveals the claim
    token once paid), so knowing an order id is not enough to claim it."""
    return hmac.new(_secret(), f"shopify pay:{order_public_id}".encode(), "sha256").hexdigest()[:24]


def checkout_url(order: ShopifyOrder) -> str:
    key = pay_page_key(order.public_id)
    return f"{settings.PUBLIC_BASE_URL}/shopify/{order.store.slug}/pay/{order.public_id}?k={key}"


def claim_page_url(store: ShopifyStore) -> str:
    return f"{settings.PUBLIC_BASE_URL}/shopify/{store.slug}/claim"


def price_cart(store: ShopifyStore, items: list[dict]) -> tuple[list[tuple], Decimal, Decimal]:
    """Check the cart against the local catalog; returns ([(variant, quantity)], subtotal,
    shipping). `items` are already checked for counts and quantities by the serializer."""
    wanted: dict[int, int] = {}
    for item in items:
        wanted[item["variantId"]] = wanted.get(item["variantId"], 0) + item["quantity"]
    variants = {
        v.variant_id: v
        for v in ShopifyVariant.objects.select_related("product").filter(
            store=store, variant_id__in=list(wanted)
        )
    }
    unknown, unavailable = {}, {}
    for index, item in enumerate(items):
        variant = variants.get(item["variantId"])
        if variant is None:
            unknown[f"items.{index}.variantId"] = [f"No variant {item['variantId']} here."]
        elif not variant.available:
            unavailable[f"items.{index}.variantId"] = [
                f"{variant.product.title} ({variant.title}) is not available."
            ]
    if unknown:
        first = next(iter(unknown.values()))[0]
        # A reference to nothing in this store's catalog: a 404, as every other.
        raise Problem(404, "unknown_variant", f"{first} Reload the catalog.", unknown)
    if unavailable:
        first = next(iter(unavailable.values()))[0]
        raise Problem(409, "variant_unavailable", first, unavailable)
    lines = [(variants[variant_id], quantity) for variant_id, quantity in wanted.items()]
    subtotal = sum((v.price_usd * q for v, q in lines), Decimal("0.00"))
    return lines, subtotal, shipping_for(store, subtotal)


def shipping_for(store: ShopifyStore, subtotal: Decimal) -> Decimal:
    threshold = store.free_shipping_threshold_usd
    if store.free_shipping_enabled and (threshold is None or subtotal >= threshold):
        return Decimal("0.00")
    return store.domestic_shipping_usd


def start_checkout(store: ShopifyStore, items: list[dict]) -> ShopifyOrder:
    """Price the cart, make its invoice and its L402 token, record the order."""
    lines, subtotal, shipping = price_cart(store, items)
    total = subtotal + shipping
    if total <= 0:
        raise Problem(409, "nothing_to_pay", "This cart costs nothing; there is nothing to pay.")
    try:
        quote = rates.sats_for(total, "USD")
    except rates.RateUnavailable as exc:
        raise Problem(503, "rate_unavailable", f"No USD exchange rate is available: {exc}") from exc
    if quote.sats > settings.CHECKOUT_MAX_INVOICE_SATS:
        raise Problem(400, "amount_too_large", f"{total} USD is more than this gateway sells.")
    order_id = _order_id()

    def record(invoice):
        macaroon = macaroons.mint(
            invoice.payment_hash,
            [
                (macaroons.MERCHANT, store.merchant.public_id),
                (macaroons.RESOURCE, f"shopify:{store.slug}:{order_id}"),
                (macaroons.AMOUNT, str(quote.sats)),
            ],
        )
        wallets.follow_invoice(invoice, store.merchant)
        order = ShopifyOrder.objects.create(
            public_id=order_id,
            store=store,
            invoice=invoice,
            subtotal_usd=subtotal,
            shipping_usd=shipping,
            total_usd=total,
            amount_sats=quote.sats,
            rate=quote.rate,
            macaroon=macaroon,
            claim_token_hash=hash_claim_token(claim_token(order_id)),
        )
        ShopifyOrderLine.objects.bulk_create(
            ShopifyOrderLine(
                order=order,
                variant_id=variant.variant_id,
                title=f"{variant.product.title} - {variant.title}"[:520],
                quantity=quantity,
                unit_price_usd=variant.price_usd,
            )
            for variant, quantity in lines
        )
        return order

    try:
        # The node first, then the invoice, the order and its lines in one transaction.
        return lightning_services.create_invoice(
            quote.sats * 1000,
            f"{store.name[:200]} order {order_id}",
            settings.SHOPIFY_ORDER_EXPIRY_SECONDS,
            purpose=PURPOSE,
            then=record,
        )
    except NodeError as exc:
        raise Problem(503, "node_unavailable", f"The Lightning node did not answer: {exc}") from exc


def challenge(order: ShopifyOrder) -> tuple[dict, dict]:
    """The 402 answer for an order: (body fields, headers)."""
    invoice = order.invoice
    body = {
        "orderId": order.public_id,
        "subtotalUsd": money(order.subtotal_usd),
        "shippingUsd": money(order.shipping_usd),
        "totalUsd": money(order.total_usd),
        "amountSats": order.amount_sats,
        "invoice": invoice.bolt11,
        "macaroon": order.macaroon,
        "paymentHash": invoice.payment_hash,
        "expiresAt": invoice.expires_at,
        "checkoutUrl": checkout_url(order),
    }
    headers = {"WWW-Authenticate": macaroons.challenge_header(order.macaroon, invoice.bolt11)}
    return body, headers


def redeem_credential(store: ShopifyStore, authorization: str) -> ShopifyOrder | None:
    """The order an `Authorization: L402 <macaroon>:<preimage>` credential has paid for;
    None when the header is not an L402 credential. Raises Problem (401) when it is one
    that does not hold."""
    try:
        parsed = macaroons.parse_authorization(authorization)
        if parsed is None:
            return None
        token = macaroons.verify(*parsed)
        order = (
            ShopifyOrder.objects.select_related("store__merchant", "invoice")
            .filter(store=store, invoice__payment_hash=token.payment_hash)
            .first()
        )
        if order is None:
            raise macaroons.CredentialError(
                401, "token_out_of_scope", "the token is not for an order of this store"
            )
        macaroons.check_scope(
            token,
            macaroons.RequestScope(
                merchant=store.merchant.public_id, resource=order_resource(order)
            ),
        )
    except macaroons.CredentialError as exc:
        raise Problem(exc.status, exc.error, str(exc)) from None
    if order.status in (Status.AWAITING_PAYMENT, Status.EXPIRED):
        # The preimage proves the payment; the watcher may just not have seen it yet.
        lightning_services.refresh_from_node(order.invoice)
        order.refresh_from_db()
    if order.status in (Status.AWAITING_PAYMENT, Status.EXPIRED):
        raise Problem(
            409, "payment_not_settled", "The node has not settled this payment yet; retry soon."
        )
    return order


# --- payment (a lightning.reactions reaction, see receivers) -------------------------------


def mark_order_paid(invoice: Invoice) -> None:
    """Inside the invoice's transaction. A payment after expiry is still accepted: the
    money arrived, and Shopify (stock) decides the rest."""
    changed = ShopifyOrder.objects.filter(
        invoice=invoice, status__in=[Status.AWAITING_PAYMENT, Status.EXPIRED]
    ).update(
        status=Status.AWAITING_DETAILS,
        paid_at=invoice.paid_at,
        paid_sats=(invoice.amount_paid_msat or invoice.amount_msat) // 1000,
    )
    if changed:
        events.announce(_order_for_event(invoice), "order.paid")


def mark_order_expired(invoice: Invoice) -> None:
    ShopifyOrder.objects.filter(invoice=invoice, status=Status.AWAITING_PAYMENT).update(
        status=Status.EXPIRED
    )


def _order_for_event(invoice: Invoice) -> ShopifyOrder:
    return ShopifyOrder.objects.select_related("store__merchant", "invoice").get(invoice=invoice)


# --- claims ------------------------------------------------------------------------------


def claim_order(store: ShopifyStore, token: str, email: str, address: dict) -> ShopifyOrder:
    """Hand in the buyer's details with the claim token: the token works once, and the
    order goes to the outbox that creates it in Shopify."""
    country = address["country"].upper()
    if store.domestic_only and country != store.domestic_country:
        raise Problem(
            400,
            "validation_error",
            f"shippingAddress.country: this store ships only to {store.domestic_country}.",
            {"shippingAddress.country": [f"This store ships only to {store.domestic_country}."]},
        )
    address = {**address, "country": country}
    with transaction.atomic():
        order = (
            ShopifyOrder.objects.select_related("store__merchant", "invoice")
            .filter(store=store, claim_token_hash=hash_claim_token(token))
            .first()
        )
        if order is None:
            raise INVALID_CLAIM
        now = timezone.now()
        claimed = ShopifyOrder.objects.filter(pk=order.pk, status=Status.AWAITING_DETAILS).update(
            status=Status.PROCESSING, email=email, shipping_address=address, claimed_at=now
        )
        if not claimed:
            raise INVALID_CLAIM
        ShopifyOrderPush.objects.create(order=order, next_attempt_at=now)
        order.refresh_from_db()
        events.announce(order, "order.claimed")
        transaction.on_commit(lambda: _queue_push(order.pk), robust=True)
    return order


def _queue_push(order_pk: int) -> None:
    from .tasks import push_order  # tasks import services

    push_order.delay(order_pk)  # if the broker is down, the beat sweep sends it


CLAIM_MESSAGES = {
    Status.PROCESSING: "Thank you! Your order is being placed with the store.",
    Status.PLACED: "Thank you! Your order has been placed with the store.",
    Status.SHIPPED: "Your order has shipped.",
    Status.NEEDS_REFUND: "The store could not accept this order; it will refund you.",
}


def claim_message(order: ShopifyOrder) -> str:
    return CLAIM_MESSAGES.get(order.status, "")


# --- order status --------------------------------------------------------------------------


def order_for_buyer(store: ShopifyStore, order_id: str, token: str) -> ShopifyOrder:
    order = (
        ShopifyOrder.objects.filter(store=store, public_id=order_id)
        .select_related("invoice")
        .first()
    )
    if order is None or not hmac.compare_digest(
        order.claim_token_hash, hash_claim_token(token or "")
    ):
        raise Problem(404, "not_found", f"No order {order_id} for this claim token.")
    return order


def order_for_merchant(merchant, store_slug: str, order_id: str) -> ShopifyOrder:
    order = (
        ShopifyOrder.objects.filter(
            store__slug=store_slug, store__merchant=merchant, public_id=order_id
        )
        .select_related("invoice")
        .first()
    )
    if order is None:
        raise Problem(404, "not_found", f"No order {order_id}.")
    return order


# --- Shopify's webhooks ----------------------------------------------------------------------

FULFILMENT_TOPICS = ("orders/fulfilled", "fulfillments/create", "fulfillments/update")


def check_shopify_signature(store: ShopifyStore, raw_body: bytes, signature: str) -> None:
    expected = base64.b64encode(
        hmac.new(store.webhook_secret.encode(), raw_body, hashlib.sha256).digest()
    ).decode()
    if not store.webhook_secret or not hmac.compare_digest(expected, signature or ""):
        raise Problem(401, "invalid_signature", "X-Shopify-Hmac-Sha256 does not verify.")


def receive_shopify_webhook(store: ShopifyStore, topic: str, payload: dict) -> bool:
    """A signed webhook from Shopify. Returns whether it moved an order to Shipped."""
    if topic not in FULFILMENT_TOPICS or not isinstance(payload, dict):
        return False
    if topic == "orders/fulfilled":
        shopify_order_id = payload.get("id")
        fulfilments = [f for f in payload.get("fulfillments") or [] if isinstance(f, dict)]
        fulfilment = fulfilments[-1] if fulfilments else {}
    else:
        shopify_order_id = payload.get("order_id")
        fulfilment = payload
        if str(payload.get("status", "success")) in ("cancelled", "failure", "error"):
            return False
    if not isinstance(shopify_order_id, int):
        return False
    return mark_order_shipped(store, shopify_order_id, _tracking(fulfilment))


def _tracking(fulfilment: dict) -> dict:
    def first(single, plural):
        value = fulfilment.get(single) or next(iter(fulfilment.get(plural) or []), "")
        return str(value or "")

    return {
        "tracking_number": first("tracking_number", "tracking_numbers")[:255],
        "tracking_carrier": str(fulfilment.get("tracking_company") or "")[:255],
        "tracking_url": first("tracking_url", "tracking_urls")[:2000],
    }


def mark_order_shipped(store: ShopifyStore, shopify_order_id: int, tracking: dict) -> bool:
    tracking = {k: v for k, v in tracking.items() if v}
    with transaction.atomic():
        orders = ShopifyOrder.objects.filter(store=store, shopify_order_id=shopify_order_id)
        shipped = orders.filter(status=Status.PLACED).update(
            status=Status.SHIPPED, shipped_at=timezone.now(), **tracking
        )
        if shipped:
            order = orders.select_related("store__merchant", "invoice").get()
            events.announce(order, "order.shipped")
        elif tracking:  # a later fulfilment update: keep the tracking current
            orders.filter(status=Status.SHIPPED).update(**tracking)
    return bool(shipped)


# --- stats ---------------------------------------------------------------------------------


def shopify_stats(merchant) -> dict:
    rows = (
        ShopifyOrder.objects.filter(store__merchant=merchant)
        .values("store__slug", "status")
        .annotate(orders=Count("id"), total=Sum("total_usd"), sats=Sum("paid_sats"))
    )
    stores = {
        s.slug: {
            "slug": s.slug,
            "storeName": s.name,
            "orders": 0,
            "revenueUsd": Decimal(0),
            "revenueSats": 0,
            "byStatus": {},
        }
        for s in ShopifyStore.objects.filter(merchant=merchant).order_by("slug")
    }
    totals = {"orders": 0, "revenueUsd": Decimal(0), "revenueSats": 0}
    by_status = defaultdict(lambda: {"orders": 0, "totalUsd": Decimal(0), "paidSats": 0})
    for row in rows:
        store = stores[row["store__slug"]]
        entry = {
            "orders": row["orders"],
            "totalUsd": row["total"] or 0,
            "paidSats": row["sats"] or 0,
        }
        store["byStatus"][row["status"]] = {**entry, "totalUsd": money(entry["totalUsd"])}
        store["orders"] += row["orders"]
        totals["orders"] += row["orders"]
        for key in ("orders", "totalUsd", "paidSats"):
            by_status[row["status"]][key] += entry[key]
        if row["status"] in REVENUE_STATES:
            for target in (store, totals):
                target["revenueUsd"] += entry["totalUsd"]
                target["revenueSats"] += entry["paidSats"]
    for target in (*stores.values(), totals):
        target["revenueUsd"] = money(target["revenueUsd"])
    return {
        "stores": list(stores.values()),
        "totals": {
            **totals,
            "byStatus": {
                status: {**entry, "totalUsd": money(entry["totalUsd"])}
                for status, entry in by_status.items()
            },
        },
    }
