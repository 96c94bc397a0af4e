"""Orders follow their invoices (lightning.reactions: inside the payment's transaction, in
its own savepoint, retried if it fails) and the refunds of failed orders."""

from django.dispatch import receiver

from lightning.reactions import reaction
from refunds.signals import refund_completed

from . import events, services

events.register()


@reaction("orders.payment", purpose=services.PURPOSE)
def follow_invoice(invoice, from_state, to_state):
    services.invoice_changed(invoice, to_state)


@receiver(refund_completed, dispatch_uid="orders.refund_completed")
def refunded(sender, refund, **kwargs):
    if refund.source == "order":
        services.refund_completed(refund)
