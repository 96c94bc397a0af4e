"""`l402.paid`: announced through the webhook outbox inside the transaction that marks a
challenge's invoice paid (so the event commits with the payment, or not at all)."""

from django.dispatch import receiver

from lightning.signals import invoice_state_changed

from .services import PURPOSE, announce_paid


@receiver(invoice_state_changed, dispatch_uid="l402.announce_paid")
def on_invoice_state_changed(sender, invoice, to_state, **kwargs):
    if to_state == "paid" and invoice.purpose == PURPOSE:
        announce_paid(invoice)
