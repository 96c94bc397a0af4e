"""Receipt emails for paid checkouts that asked for one (`email` + `sendEmail`).

The need is recorded (`receipt_due_at`) in the transaction that marks the invoice paid, so
it commits with the payment; a task sends it after commit, and a periodic sweep sends any
that a crash or a broker outage left behind. Each receipt is claimed with a conditional
update of `receipt_sent_at` before it is sent, so two senders never both send it; a send
that fails releases the claim for the sweep to retry.
"""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from config.prepared import Prepared

from .models import CheckoutInvoice

log = logging.getLogger(__name__)

SWEEP_BATCH = 200


# Read for every checkout paid (most owe no receipt), so prepared.
_owed_receipt = Prepared(
    lambda invoice_id: (
        CheckoutInvoice.objects.filter(
            invoice_id=invoice_id, send_email=True, receipt_due_at__isnull=True
        )
        .exclude(email="")
        .values_list("pk")
    ),
    integers=True,
)


def mark_receipt_due(invoice) -> list[int]:
    """Inside the payment's transaction: record that this invoice's checkout is owed a
    receipt. Returns the ids of the checkouts now due one."""
    due = [pk for (pk,) in _owed_receipt.all(invoice.pk)]
    if due:
        CheckoutInvoice.objects.filter(pk__in=due).update(receipt_due_at=timezone.now())
    return due


def send_receipt(checkout_id: int) -> bool:
    """Send one due receipt unless it has been sent (or is being sent). Returns whether
    this call sent it."""
    claimed_at = timezone.now()
    claimed = CheckoutInvoice.objects.filter(
        pk=checkout_id, receipt_due_at__isnull=False, receipt_sent_at__isnull=True
    ).update(receipt_sent_at=claimed_at)
    if not claimed:
        return False
    checkout = CheckoutInvoice.objects.select_related("merchant", "invoice").get(pk=checkout_id)
    try:
        send_mail(
            subject=f"Your receipt from {checkout.merchant.name}",
            message=receipt_text(checkout),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[checkout.email],
        )
    except Exception:
        CheckoutInvoice.objects.filter(pk=checkout_id, receipt_sent_at=claimed_at).update(
            receipt_sent_at=None
        )
        raise
    return True


def send_due_receipts() -> int:
    """Send every receipt that is due and unsent (the sweep). Returns how many were sent."""
    due = CheckoutInvoice.objects.filter(
        receipt_due_at__isnull=False, receipt_sent_at__isnull=True
    ).values_list("pk", flat=True)[:SWEEP_BATCH]
    sent = 0
    for checkout_id in due:
        try:
            sent += send_receipt(checkout_id)
        except Exception:
            log.exception("receipt for checkout %s not sent; will retry", checkout_id)
    return sent


def receipt_text(checkout: CheckoutInvoice) -> str:
    invoice = checkout.invoice
    lines = [
        f"Thank you for your payment to {checkout.merchant.name}.",
        "",
        f"Invoice:      {checkout.public_id}",
    ]
    if checkout.description:
        lines.append(f"For:          {checkout.description}")
    if checkout.quantity != 1:
        lines.append(f"Quantity:     {checkout.quantity}")
    if checkout.currency != "SAT":
        lines.append(f"Amount:       {checkout.amount} {checkout.currency}")
    lines += [
        f"Paid:         {checkout.sats_amount} sats",
        f"Paid at:      {invoice.paid_at:%Y-%m-%d %H:%M:%S} UTC",
        f"Payment hash: {invoice.payment_hash}",
    ]
    if invoice.preimage:
        lines.append(f"Preimage:     {invoice.preimage} (your proof of payment)")
    if checkout.user_ref:
        lines.append(f"Reference:    {checkout.user_ref}")
    return "\n".join(lines) + "\n"
