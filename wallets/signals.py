"""What other apps may follow in the wallets, without the wallets knowing them."""

from django.dispatch import Signal

# An outgoing payment ended (`payment.status` is success or failed), sent once, inside the
# transaction that records it: a receiver's writes commit or roll back with it.
outgoing_payment_ended = Signal()
