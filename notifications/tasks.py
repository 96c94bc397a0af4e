from celery import shared_task

from . import sales, summaries


@shared_task
def send_sale_notice(invoice_id: int) -> bool:
    return sales.send_sale_notice(invoice_id)


@shared_task
def send_due_sale_notices() -> int:
    return sales.send_due_sale_notices()


@shared_task
def send_daily_summaries() -> int:
    return summaries.send_daily_summaries()
