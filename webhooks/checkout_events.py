"""Checkout's webhook events: `invoice.created`, `payment.completed`, `payment.expired`.

The payment events follow the Lightning invoice: a receiver of `invoice_state_changed`
(sent inside the transaction of the change) writes them to the outbox.
"""

from django.dispatch import receiver

from checkout import services as checkout_services
from checkout.models import CheckoutInvoice
from checkout.serializers import format_amount
from lightning.signals import invoice_state_changed

from .services import emit, isoformat

EVENT_OF_STATE = {
    "paid": "payment.completed",
    "expired": "payment.expired",
    "canceled": "payment.expired",
}


def checkout_event_data(checkout: CheckoutInvoice) -> dict:
    return {
        "invoiceId": checkout.public_id,
        "userRef": checkout.user_ref,
        "status": checkout.status,
        "amount": format_amount(checkout.amount, checkout.currency),
        "currency": checkout.currency,
        "amountSats": checkout.sats_amount,
        "paidAt": isoformat(checkout.invoice.paid_at),
        "metadata": checkout.metadata,
    }


def emit_checkout_event(checkout: CheckoutInvoice, type: str):
    """Announce `type` about this checkout, to the merchant's endpoints and to the
    checkout's own webhookUrl. Inside the transaction of the change; at most once."""
    return emit(
        checkout.merchant,
        type,
        checkout_event_data(checkout),
        source=f"checkout:{checkout.pk}",
        extra_urls=[checkout.webhook_url],
    )


@receiver(invoice_state_changed, dispatch_uid="webhooks.checkout_invoice_state_changed")
def announce_checkout_payment(sender, invoice, to_state, **kwargs):
    event_type = EVENT_OF_STATE.get(to_state)
    if event_type is None or invoice.purpose != checkout_services.PURPOSE:
        return
    checkout = CheckoutInvoice.objects.select_related("merchant").filter(invoice=invoice).first()
    if checkout is None:
        return  # an invoice of another kind (L402, Shopify): theirs to announce
    checkout.invoice = invoice
    emit_checkout_event(checkout, event_type)
