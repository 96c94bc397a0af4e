from django.dispatch import Signal

# Sent once, after the transaction that marked an Invoice paid has committed, with
# `invoice`. For reactions that may be lost in a crash (waking a page); durable ones are
# lightning.reactions, which run inside that transaction.
invoice_paid = Signal()
