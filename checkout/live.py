"""The hosted page's push: a checkout's status, sent to its open sockets (realtime.push)
when its invoice is paid, expires or is canceled, in the transaction of the change."""

from realtime.push import publish


def group_of(invoice_id: str) -> str:
    return f"checkout.{invoice_id}"


def announce(checkout) -> None:
    """`checkout` with its invoice as changed: its new status, to its open pages."""
    from .pages import status_body

    publish(group_of(checkout.public_id), status_body(checkout))
