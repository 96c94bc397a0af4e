"""The wallets' webhook events, written to the outbox inside the transaction of the change:
`payment.sent` / `payment.failed` for outgoing payments; `payment.held`,
`payment.completed`, `payment.canceled` for invoices made through the wallet API (a
checkout, an L402 challenge or a Shopify order announces its own). A `webhook` given when
the invoice was made gets `payment.completed`, signed like every delivery."""

from webhooks.services import emit

from .models import Payment
from .serializers import payment_details


def announce(payment: Payment, type: str) -> None:
    if payment.direction == Payment.Direction.IN and payment.tag:
        return
    extra_urls = [payment.webhook] if type == "payment.completed" and payment.webhook else []
    emit(
        payment.wallet.merchant,
        type,
        payment_details(payment),
        source=f"wallet-payment:{payment.pk}",
        extra_urls=extra_urls,
    )
