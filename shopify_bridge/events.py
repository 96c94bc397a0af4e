"""Our webhook events about Shopify orders, written to the webhooks outbox inside the
transaction of the order's state change (so each is announced exactly once)."""

from webhooks.services import emit, isoformat, register_event_type

EVENT_TYPES = {
    "order.paid": "A Shopify cart was paid with Lightning; waiting for the buyer's details.",
    "order.claimed": "The buyer of a paid Shopify cart handed in email and address.",
    "order.placed": "The order was created in Shopify, marked paid.",
    "order.shipped": "Shopify reported the order fulfilled, with tracking.",
    "order.needs_refund": "Paid, but Shopify refused the order (e.g. out of stock): refund it.",
}


def register() -> None:
    for name, description in EVENT_TYPES.items():
        register_event_type(name, description)


def announce(order, type: str) -> None:
    """Call inside the transaction that moved `order` to the state `type` names."""
    emit(order.store.merchant, type, event_data(order), source=f"shopify-order:{order.pk}")


def event_data(order) -> dict:
    return {
        "orderId": order.public_id,
        "store": order.store.slug,
        "status": order.status,
        "totalUsd": f"{order.total_usd:.2f}",
        "currency": "USD",
        "amountSats": order.amount_sats,
        "paidSats": order.paid_sats,
        "paymentHash": order.invoice.payment_hash,
        "paidAt": isoformat(order.paid_at),
        "email": order.email or None,
        "shopifyOrderId": order.shopify_order_id,
        "shopifyOrderNumber": order.shopify_order_number or None,
        "trackingNumber": order.tracking_number or None,
        "trackingCarrier": order.tracking_carrier or None,
        "trackingUrl": order.tracking_url or None,
        "refundReason": order.refund_reason or None,
        "items": [
            {
                "variantId": line.variant_id,
                "title": line.title,
                "quantity": line.quantity,
                "unitPriceUsd": f"{line.unit_price_usd:.2f}",
            }
            for line in order.lines.all()
        ],
    }
