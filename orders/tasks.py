from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def process(order_id):
    """Pay a purchase from balance and deliver, after the commit that made it due."""
    services.process(order_id)


@shared_task(ignore_result=True)
def sweep():
    """Every few seconds (beat): orders whose task was lost, and receipts not sent."""
    return services.sweep()
