"""Checkout's webhook events: `invoice.created`, `payment.completed`, `payment.expired`,
written to the webhooks outbox inside the transaction of the change; a change of status
also goes to the checkout's open pages (checkout.live)."""

from config.prepared import Prepared, columns
from webhooks.models import MerchantWebhookSecret
from webhooks.services import emit, isoformat

from . import live
from .models import CheckoutInvoice, Merchant
from .serializers import format_amount

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


# The checkout of a paid invoice, with its merchant and the merchant's default secret (which
# signs what goes to the checkout's webhookUrl): read on the way from each payment to its
# webhook, so prepared.
_checkout_of_invoice = Prepared(
    lambda invoice_id: CheckoutInvoice.objects.filter(invoice_id=invoice_id).values_list(
        *columns(CheckoutInvoice),
        *columns(Merchant, "merchant__"),
        *columns(MerchantWebhookSecret, "merchant__webhook_secret__"),
    )[:1],
    integers=True,
)


def announce_state_change(invoice, to_state: str) -> None:
    event_type = EVENT_OF_STATE.get(to_state)
    if event_type is None:
        return
    found = _checkout_of_invoice.joined(
        (CheckoutInvoice, Merchant, MerchantWebhookSecret), invoice.pk
    )
    if not found:
        return
    checkout, checkout.merchant, secret = found[0]
    if secret is not None:
        checkout.merchant.webhook_secret = secret
    checkout.invoice = invoice
    emit_checkout_event(checkout, event_type)
    live.announce(checkout)  # and to its open pages, from the same read
