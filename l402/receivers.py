"""`l402.paid`: announced through the webhook outbox inside the transaction that marks a
challenge's invoice paid (a lightning.reactions reaction, retried if it fails)."""

from lightning.reactions import reaction

from .services.events import announce_paid
from .services.offers import PURPOSE


@reaction("l402.announce_paid", purpose=PURPOSE)
def on_invoice_state_changed(invoice, from_state, to_state):
    if to_state == "paid":
        announce_paid(invoice)
