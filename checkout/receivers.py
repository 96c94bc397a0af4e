"""Checkout's reactions to payments."""

from django.db import transaction
from django.dispatch import receiver

from lightning.signals import invoice_state_changed

from . import receipts, tasks
from .services import PURPOSE


@receiver(invoice_state_changed, dispatch_uid="checkout.receipts")
def record_receipt_when_paid(sender, invoice, from_state, to_state, **kwargs):
    """Inside the payment's transaction: record the receipts it makes due, and send them
    once it has committed (the sweep sends any whose task was lost)."""
    if to_state != "paid" or invoice.purpose != PURPOSE:
        return
    for checkout_id in receipts.mark_receipt_due(invoice):
        transaction.on_commit(lambda pk=checkout_id: tasks.send_receipt.delay(pk), robust=True)
