"""Orders follow their Lightning invoice (inside the transaction of its state change)."""

from django.dispatch import receiver

from lightning.models import Invoice
from lightning.signals import invoice_state_changed

from . import services


@receiver(invoice_state_changed, dispatch_uid="shopify_bridge.invoice_state_changed")
def follow_invoice(sender, invoice, from_state, to_state, **kwargs):
    if invoice.purpose != services.PURPOSE:
        return
    if to_state == Invoice.State.PAID:
        services.mark_order_paid(invoice)
    elif to_state in (Invoice.State.EXPIRED, Invoice.State.CANCELED):
        services.mark_order_expired(invoice)
