"""Checkout's reactions to payments (lightning.reactions: inside the payment's transaction,
each in its own savepoint, retried if it fails)."""

from django.db import transaction

from lightning.reactions import reaction

from . import events, receipts, tasks
from .services import PURPOSE


@reaction("checkout.receipts", purpose=PURPOSE)
def record_receipt_when_paid(invoice, from_state, to_state):
    """Record the receipts a payment makes due, and send them once it has committed (the
    sweep sends any whose task was lost)."""
    if to_state != "paid":
        return
    for checkout_id in receipts.mark_receipt_due(invoice):
        transaction.on_commit(lambda pk=checkout_id: tasks.send_receipt.delay(pk), robust=True)


@reaction("checkout.webhooks", purpose=PURPOSE)
def announce_payment(invoice, from_state, to_state):
    events.announce_state_change(invoice, to_state)
