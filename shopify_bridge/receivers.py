"""Orders follow their Lightning invoice (a lightning.reactions reaction: inside the
transaction of its state change, retried if it fails)."""

from lightning.models import Invoice
from lightning.reactions import reaction

from . import services


@reaction("shopify_bridge.orders", purpose=services.PURPOSE)
def follow_invoice(invoice, from_state, to_state):
    if to_state == Invoice.State.PAID:
        services.mark_order_paid(invoice)
    elif to_state in (Invoice.State.EXPIRED, Invoice.State.CANCELED):
        services.mark_order_expired(invoice)
