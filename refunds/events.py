"""Refunds' webhook events, written to the outbox inside the transaction of the change.
A checkout's refunds also go to that checkout's own webhookUrl, as its other events do."""

from checkout.models import CheckoutInvoice
from webhooks.services import emit, register_event_type

from .models import Refund
from .serializers import refund_data

EVENT_TYPES = {
    "refund.created": "A refund was made: paid to the buyer's refund address, or waiting "
    "for the buyer to claim its link (claimUrl, lnurl).",
    "refund.completed": "A refund was paid to the buyer.",
    "refund.failed": "A refund will not be paid (canceled, or its payout failed); its amount "
    "may be refunded again.",
}


def register() -> None:
    for name, description in EVENT_TYPES.items():
        register_event_type(name, description)


def announce(refund: Refund, type: str) -> None:
    if refund.purpose != Refund.Purpose.REFUND:
        return  # an order's delivery: the order announces itself
    extra = []
    if refund.source == Refund.Source.CHECKOUT:
        extra = list(
            CheckoutInvoice.objects.filter(public_id=refund.source_id).values_list(
                "webhook_url", flat=True
            )
        )
    emit(refund.merchant, type, refund_data(refund), source=f"refund:{refund.pk}", extra_urls=extra)
