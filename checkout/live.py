"""The hosted page's push: a checkout's status, sent to its open sockets (realtime.push)
when its invoice is paid, expires or is canceled, in the transaction of the change."""

from realtime.push import publish

from .models import CheckoutInvoice


def group_of(invoice_id: str) -> str:
    return f"checkout.{invoice_id}"


def announce(invoice) -> None:
    from .pages import status_body

    checkout = (
        CheckoutInvoice.objects.filter(invoice=invoice)
        .only("public_id", "amount", "currency", "sats_amount")
        .first()
    )
    if checkout is None:
        return
    checkout.invoice = invoice
    publish(group_of(checkout.public_id), status_body(checkout))
