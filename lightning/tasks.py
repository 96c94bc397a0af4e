from celery import shared_task

from . import reactions, services


@shared_task(ignore_result=True)
def reconcile_invoices():
    return services.reconcile_invoices()


@shared_task(ignore_result=True)
def expire_invoices():
    return services.expire_invoices()


@shared_task(ignore_result=True)
def retry_pending_reactions():
    """Every few seconds (beat): reactions to invoice changes that failed, retried."""
    return reactions.retry_pending_reactions()
