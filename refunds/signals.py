"""What other apps may follow in refunds, without refunds knowing them."""

from django.dispatch import Signal

# A refund was paid (`refund.state` is completed), sent once, inside that transaction.
refund_completed = Signal()
