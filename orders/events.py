"""Orders' webhook events, inside the transaction of the change: `purchase.success`,
`purchase.failed`, `purchase.refunded` to the merchant's endpoints (the usual envelope), and
the seed's bare order body to the order's own `webhook_url` (signed with the merchant's
default secret, as every delivery)."""

from webhooks.services import emit, register_event_type

from .models import Order
from .serializers import order_data

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
