from django.dispatch import Signal

# Sent once, after the transaction that marked an Invoice paid has committed.
# Receivers get `invoice` (a lightning.models.Invoice).
invoice_paid = Signal()
