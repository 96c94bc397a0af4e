"""The ledger follows every invoice a merchant sold (lightning.reactions: inside the
transaction of the invoice's state change, in its own savepoint, retried if it fails), and
the wallets' webhook event types."""

from lightning.reactions import ANY_PURPOSE, reaction
from webhooks.services import register_event_type

from . import services

for _name, _description in {
    "payment.sent": "An outgoing payment from the wallet succeeded.",
    "payment.failed": "An outgoing payment from the wallet failed; its reserve is released.",
    "payment.held": "A hold invoice was paid and is held until settled or canceled.",
    "payment.canceled": "A hold invoice was canceled (by the merchant, or before its HTLC "
    "expiry); the payer gets the money back.",
}.items():
    register_event_type(_name, _description)


@reaction("wallets.ledger", purpose=ANY_PURPOSE)
def follow_invoice(invoice, from_state, to_state):
    services.invoice_changed(invoice, from_state, to_state)
