"""The sale notices' reaction to every paid invoice (lightning.reactions: inside the
payment's transaction, in its own savepoint, retried if it fails)."""

from django.db import transaction

from lightning.models import Invoice
from lightning.reactions import ANY_PURPOSE, reaction

from . import sales, tasks


@reaction("notifications.sale", purpose=ANY_PURPOSE)
def record_sale_notice_when_paid(invoice, from_state, to_state):
    """Record the notice a sale owes its merchant, and send it once the payment has
    committed (the sweep sends any whose task was lost)."""
    if to_state != Invoice.State.PAID:
        return
    if sales.mark_sale_notice_due(invoice):
        transaction.on_commit(lambda: tasks.send_sale_notice.delay(invoice.pk), robust=True)
