from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def reconcile_invoices():
    return services.reconcile_invoices()


@shared_task(ignore_result=True)
def expire_invoices():
    return services.expire_invoices()
