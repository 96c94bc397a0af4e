from django.dispatch import Signal

# Sent inside the transaction that changes an Invoice's state, with `invoice` (after the
# change), `from_state` and `to_state`. Receivers write what must commit or roll back with
# the change (an outbox row, an order's state) and do no I/O: an exception aborts it all.
invoice_state_changed = Signal()

# Sent once, after the transaction that marked an Invoice paid has committed, with
# `invoice`. For reactions that may be lost in a crash (waking a page); durable ones
# belong on invoice_state_changed.
invoice_paid = Signal()
