from celery import shared_task

from . import services


@shared_task(ignore_result=True, acks_late=False)
def deliver(delivery_id: int, token: str):
    """One attempt of a leased delivery. Not acknowledged late: the lease, not the broker,
    brings a delivery back after a crash (acking late would only repeat a stale lease)."""
    services.attempt_delivery(delivery_id, token)


@shared_task(ignore_result=True)
def deliver_due():
    """Every few seconds (beat): queue what is due (retries, lost messages, crashed
    workers) and tell merchants about endpoints that were disabled."""
    services.claim_due()
    services.send_disabled_notices()
