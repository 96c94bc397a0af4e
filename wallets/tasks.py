from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def resolve_pending_payments():
    """Every few seconds (beat): outgoing payments whose sender stopped, settled or released
    as the node says."""
    return services.resolve_pending_payments()
