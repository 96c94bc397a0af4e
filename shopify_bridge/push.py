"""Claimed orders into Shopify, from the outbox (ShopifyOrderPush), exactly once.

Three things keep it to one Shopify order per payment, whatever crashes or retries:
one outbox row per order (a unique key), a lease so one worker at a time sends it, and a
marker tag (`zapgate-<orderId>`) on the Shopify order that every attempt looks for first:
an attempt whose answer was lost (Shopify created the order, then we crashed or timed out)
is followed by one that finds the order instead of creating another.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import events
from .models import ShopifyOrder, ShopifyOrderPush
from .shopify import ShopifyClient, ShopifyError, numeric_id

log = logging.getLogger(__name__)

Status = ShopifyOrder.Status
# Longer than an attempt can take (two calls of SHOPIFY_TIMEOUT_SECONDS plus the client's
# throttle waits), so a second worker never sends an order whose first attempt is running.
LEASE = timedelta(minutes=10)
# Waits after the 1st, 2nd, ... failed attempt; then every hour, until Shopify answers.
RETRY_DELAYS = [5, 15, 30, 60, 120, 300, 600, 1800]
RETRY_CEILING = 3600
GATEWAY_NAME = "Bitcoin Lightning (Zapgate)"

FIND_ORDER_QUERY = """
query FindZapgateOrder($query: String!) {
  orders(first: 1, query: $query) { nodes { id name } }
}
"""

ORDER_CREATE_MUTATION = """
mutation CreateZapgateOrder($order: OrderCreateOrderInput!, $options: OrderCreateOptionsInput) {
  orderCreate(order: $order, options: $options) {
    order { id name }
    userErrors { field message code }
  }
}
"""


def marker_tag(order: ShopifyOrder) -> str:
    return f"zapgate-{order.public_id}"


def push_order(order_pk: int) -> bool:
    """Send one claimed order now, if it is due and no one else is sending it."""
    push = ShopifyOrderPush.objects.filter(order_id=order_pk).first()
    token = _lease(push.pk) if push else None
    return bool(token) and _attempt(push.pk, token)


def push_due_orders(limit: int = 100) -> int:
    """The beat sweep: every due push (new, retrying, or its worker died), and refund
    notices not yet sent. Returns how many orders it placed or refused."""
    now = timezone.now()
    due = ShopifyOrderPush.objects.filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now),
        state=ShopifyOrderPush.State.PENDING,
        next_attempt_at__lte=now,
    ).values_list("pk", flat=True)[:limit]
    done = 0
    for pk in list(due):
        token = _lease(pk)
        if token:
            done += _attempt(pk, token)
    send_refund_notices()
    return done


def _lease(push_pk: int) -> str | None:
    now = timezone.now()
    token = secrets.token_hex(16)
    leased = ShopifyOrderPush.objects.filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now),
        pk=push_pk,
        state=ShopifyOrderPush.State.PENDING,
        next_attempt_at__lte=now,
    ).update(lease_token=token, lease_expires_at=now + LEASE)
    return token if leased else None


def _attempt(push_pk: int, token: str) -> bool:
    """One try. Returns True when the order's fate is settled (placed or refused)."""
    push = ShopifyOrderPush.objects.select_related("order__store__merchant", "order__invoice").get(
        pk=push_pk
    )
    order = push.order
    client = ShopifyClient(order.store)
    try:
        existing = client.execute(
            FIND_ORDER_QUERY, {"query": f"tag:'{marker_tag(order)}'"}, operation="findOrder"
        )["orders"]["nodes"]
        if existing:
            _record_placed(push, token, existing[0])
            return True
        result = client.execute(
            ORDER_CREATE_MUTATION, order_create_variables(order), operation="orderCreate"
        )["orderCreate"]
        if result.get("userErrors"):
            reason = "; ".join(e.get("message", "") for e in result["userErrors"])
            _record_refused(push, token, reason)
            return True
        _record_placed(push, token, result["order"])
        return True
    except (ShopifyError, KeyError, TypeError) as exc:
        _reschedule(push, token, str(exc) or repr(exc))
        return False


def order_create_variables(order: ShopifyOrder) -> dict:
    def money(amount):
        return {"shopMoney": {"amount": f"{amount:.2f}", "currencyCode": "USD"}}

    address = order.shipping_address
    payment_hash = order.invoice.payment_hash
    shipping_address = {
        "firstName": address.get("firstName", ""),
        "lastName": address.get("lastName", ""),
        "address1": address.get("address1", ""),
        "address2": address.get("address2", ""),
        "city": address.get("city", ""),
        "zip": address.get("zip", ""),
        "countryCode": address.get("country", ""),
    }
    if address.get("province"):
        shipping_address["provinceCode"] = address["province"]
    payload = {
        "currency": "USD",
        "email": order.email,
        "lineItems": [
            {
                "variantId": f"gid://shopify/ProductVariant/{line.variant_id}",
                "quantity": line.quantity,
                "priceSet": money(line.unit_price_usd),
            }
            for line in order.lines.all()
        ],
        "shippingAddress": shipping_address,
        "billingAddress": shipping_address,
        "financialStatus": "PAID",
        "transactions": [
            {
                "kind": "SALE",
                "status": "SUCCESS",
                "gateway": GATEWAY_NAME,
                "amountSet": money(order.total_usd),
            }
        ],
        "note": (
            f"Paid with Bitcoin Lightning: {order.paid_sats} sats, payment hash {payment_hash}. "
            f"Zapgate order {order.public_id}."
        ),
        "tags": ["zapgate", marker_tag(order)],
        "customAttributes": [
            {"key": "zapgate_order_id", "value": order.public_id},
            {"key": "lightning_payment_hash", "value": payment_hash},
            {"key": "lightning_amount_sats", "value": str(order.paid_sats)},
        ],
    }
    if order.shipping_usd > 0:
        payload["shippingLines"] = [{"title": "Shipping", "priceSet": money(order.shipping_usd)}]
    return {
        "order": payload,
        "options": {"inventoryBehaviour": "DECREMENT_OBEYING_POLICY", "sendReceipt": True},
    }


def _record_placed(push: ShopifyOrderPush, token: str, shopify_order: dict) -> None:
    with transaction.atomic():
        if not _finish_push(push, token, ShopifyOrderPush.State.DONE, ""):
            return
        placed = ShopifyOrder.objects.filter(pk=push.order_id, status=Status.PROCESSING).update(
            status=Status.PLACED,
            shopify_order_gid=shopify_order["id"],
            shopify_order_id=numeric_id(shopify_order["id"]),
            shopify_order_number=shopify_order.get("name", ""),
            placed_at=timezone.now(),
        )
        if placed:
            events.announce(_reload(push.order_id), "order.placed")


def _record_refused(push: ShopifyOrderPush, token: str, reason: str) -> None:
    log.warning("Shopify refused order %s: %s", push.order.public_id, reason)
    with transaction.atomic():
        if not _finish_push(push, token, ShopifyOrderPush.State.REFUSED, reason):
            return
        refused = ShopifyOrder.objects.filter(pk=push.order_id, status=Status.PROCESSING).update(
            status=Status.NEEDS_REFUND, refund_reason=reason[:2000]
        )
        if refused:
            events.announce(_reload(push.order_id), "order.needs_refund")
            transaction.on_commit(send_refund_notices, robust=True)


def _finish_push(push, token, state, error) -> bool:
    """Close the outbox row, only while this attempt still holds its lease."""
    return bool(
        ShopifyOrderPush.objects.filter(pk=push.pk, lease_token=token).update(
            state=state, lease_token="", lease_expires_at=None, last_error=error[:2000]
        )
    )


def _reschedule(push: ShopifyOrderPush, token: str, error: str) -> None:
    attempts = push.attempts + 1
    delay = RETRY_DELAYS[attempts - 1] if attempts <= len(RETRY_DELAYS) else RETRY_CEILING
    log.info("order %s not placed yet (attempt %d): %s", push.order.public_id, attempts, error)
    ShopifyOrderPush.objects.filter(pk=push.pk, lease_token=token).update(
        attempts=attempts,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        lease_token="",
        lease_expires_at=None,
        last_error=error[:2000],
    )


def _reload(order_pk: int) -> ShopifyOrder:
    return ShopifyOrder.objects.select_related("store__merchant", "invoice").get(pk=order_pk)


def send_refund_notices() -> int:
    """Email each merchant about orders Shopify refused (once per order)."""
    sent = 0
    due = ShopifyOrder.objects.select_related("store__merchant", "invoice").filter(
        status=Status.NEEDS_REFUND, merchant_notified_at__isnull=True
    )
    for order in due[:100]:
        # Mark first: a crash after this loses one email, never sends it twice a minute.
        if not ShopifyOrder.objects.filter(pk=order.pk, merchant_notified_at__isnull=True).update(
            merchant_notified_at=timezone.now()
        ):
            continue
        merchant = order.store.merchant
        if not merchant.email:
            continue
        try:
            send_mail(
                f"Refund needed: Shopify refused order {order.public_id}",
                f"The buyer paid {order.paid_sats} sats ({order.total_usd} USD) for order "
                f"{order.public_id} in your store {order.store.name}, but Shopify refused to "
                f"create it: {order.refund_reason}\n\nPlease refund the buyer"
                f"{f' at {order.email}' if order.email else ''}. Payment hash: "
                f"{order.invoice.payment_hash}.",
                settings.DEFAULT_FROM_EMAIL,
                [merchant.email],
            )
            sent += 1
        except OSError as exc:
            log.warning("could not email %s about order %s: %s", merchant.email, order, exc)
    return sent
