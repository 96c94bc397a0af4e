"""Who sends a freshly leased delivery.

Inside a Celery worker (where the watcher marks invoices paid), a small pool of sender
threads in the same process sends it as soon as the transaction commits: no broker round
trip between a payment and its webhook. Anywhere else (a web request), it is queued as a
Celery task. Either way the delivery is leased first, so if this process dies the lease runs
out and the beat sweep hands the delivery to another worker: only speed depends on this.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import signals
from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)

_senders: ThreadPoolExecutor | None = None


def send_soon(leases: list[tuple[int, str]], ready=()) -> None:
    """Send these leased deliveries; `ready` (services.Ready) are those of them whose rows
    this process has in hand, which its senders need not read back."""
    if _senders is not None:
        in_hand = {r.delivery.pk: r for r in ready}
        for delivery_id, token in leases:
            _senders.submit(_send, delivery_id, token, in_hand.get(delivery_id))
        return
    from .tasks import deliver

    for delivery_id, token in leases:
        deliver.delay(delivery_id, token)


def _send(delivery_id: int, token: str, ready=None) -> None:
    from .services import attempt_delivery

    close_old_connections()
    try:
        attempt_delivery(delivery_id, token, ready)
    except Exception:
        log.exception("webhook delivery %s: the attempt failed; the sweep retries it", delivery_id)


@signals.worker_init.connect
def start_senders(**kwargs) -> None:
    global _senders
    if settings.WEBHOOKS_WORKER_SENDERS > 0:
        _senders = ThreadPoolExecutor(
            settings.WEBHOOKS_WORKER_SENDERS, thread_name_prefix="webhook-sender"
        )


@signals.worker_shutdown.connect
def stop_senders(**kwargs) -> None:
    """Let attempts under way finish (at most the timeout); drop the queued ones, whose
    leases run out for the sweep."""
    global _senders
    if _senders is not None:
        pool, _senders = _senders, None
        pool.shutdown(wait=True, cancel_futures=True)
