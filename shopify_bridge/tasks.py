import logging

from celery import shared_task

from . import push
from .catalog import sync_catalog
from .models import ShopifyStore
from .shopify import ShopifyError

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def push_order(order_pk: int) -> bool:
    return push.push_order(order_pk)


@shared_task(ignore_result=True)
def push_due_orders() -> int:
    return push.push_due_orders()


@shared_task(ignore_result=True)
def sync_store_catalog(store_pk: int) -> None:
    store = ShopifyStore.objects.filter(pk=store_pk, active=True).first()
    if store is None:
        return
    try:
        sync_catalog(store)
    except ShopifyError as exc:  # recorded on the store; the next beat run tries again
        log.warning("catalog sync of %s failed: %s", store.slug, exc)


@shared_task(ignore_result=True)
def sync_all_catalogs() -> None:
    for pk in ShopifyStore.objects.filter(active=True).values_list("pk", flat=True):
        sync_store_catalog.delay(pk)
