from celery import shared_task

from . import emails, services


@shared_task(ignore_result=True)
def pay_out(refund_id):
    """A refund's payout, started after the commit that made it due."""
    services.pay_out(refund_id)


@shared_task(ignore_result=True)
def send_emails(refund_id):
    emails.send(refund_id)


@shared_task(ignore_result=True)
def sweep():
    """Every few seconds (beat): expire links, retry addresses, resume stopped payouts,
    send due emails."""
    return services.sweep()
