"""Orders' webhook events, inside the transaction of the change: `purchase.success`,
`purchase.failed`, `purchase.refunded` to the merchant's endpoints (the usual envelope), and
the seed's bare order body to the order's own `webhook_url` (signed with the merchant's
default secret, as every delivery)."""

from django.utils import timezone

from webhooks.services import emit, register_event_type

from .models import Order

EVENT_TYPES = {
    "purchase.success": "A reseller's order (the Bitrefill-compatible API) was paid and delivered.",
    "purchase.failed": "A reseller's order failed (e.g. out of stock after payment); its "
    "money goes back.",
    "purchase.refunded": "The money of a failed reseller's order is back with the buyer.",
}
ANNOUNCED = {Order.Status.SUCCESS, Order.Status.FAILED, Order.Status.REFUNDED}


def register() -> None:
    for name, description in EVENT_TYPES.items():
        register_event_type(name, description)


def announce(order: Order) -> None:
    if order.status not in ANNOUNCED:
        return
    type = f"purchase.{order.status}"
    data = order_data(order)
    source = f"order:{order.pk}"
    emit(order.merchant, type, data, source=source)
    if order.webhook_url:
        emit(
            order.merchant,
            type,
            data,
            source=f"{source}:url",
            extra_urls=[order.webhook_url],
            endpoints=[],
            bare=True,
        )


def order_data(order: Order) -> dict:
    """An order as the seed shows it (GET /v1/order/{id} and the webhook body)."""
    invoice = order.invoice if order.invoice_id else None
    expired = order.status == Order.Status.EXPIRED or (
        order.status == Order.Status.UNPAID and invoice and invoice.expires_at <= timezone.now()
    )
    data = {
        "id": order.public_id,
        "email": order.email or None,
        "expired": bool(expired),
        "value": order.value_package,
        "product": order.operator.slug,
        "currency": order.operator.currency,
        "price": order.price_sats,
        "satoshiPrice": order.price_sats,
        "partialPayment": False,
        "userRef": order.user_ref or None,
        "status": Order.Status.EXPIRED if expired else order.status,
        "paymentMethod": order.payment_method,
    }
    if invoice is not None:
        data["payment"] = {
            "lightningInvoice": invoice.bolt11,
            "satoshiPrice": order.price_sats,
            "altcoinCode": "LNBC",
        }
    if order.delivery:
        data["delivery"] = order.delivery
        if order.delivery.get("type") == "lnurl_withdraw":  # the seed's shape for it
            data["thorInfo"] = {
                key: order.delivery[key]
                for key in ("link", "k1", "lnurl", "other")
                if key in order.delivery
            }
    if order.failure_reason:
        data["failureReason"] = order.failure_reason
    return data
