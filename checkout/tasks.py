from celery import shared_task

from . import receipts


@shared_task
def send_receipt(checkout_id: int) -> bool:
    return receipts.send_receipt(checkout_id)


@shared_task
def send_due_receipts() -> int:
    return receipts.send_due_receipts()
