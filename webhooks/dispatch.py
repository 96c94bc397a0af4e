"""Who sends a freshly leased delivery.

In the processes that serve (a Celery worker, where the watcher marks invoices paid, and a
web server process, see config.wsgi), a small pool of sender threads in the same process
sends it as soon as the transaction commits: no broker round trip between a payment and its
webhook, and no broker message per invoice created. Anywhere else (a management command, a
shell), it is queued as a Celery task. Either way the delivery is leased first, so if this
process dies the lease runs out and the beat sweep hands the delivery to another worker:
only speed depends on this.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import signals
from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)

_senders: ThreadPoolExecutor | None = None
_senders_pid: int | None = None  # the pool's threads exist in the process that made them
_sends_in_process = False
_lock = threading.Lock()


def send_in_process() -> None:
    """From now on this process sends its deliveries itself (a server process calls it as
    it starts); the pool is made on first use, so also after a fork."""
    global _sends_in_process
    _sends_in_process = True


def _pool() -> ThreadPoolExecutor | None:
    global _senders, _senders_pid
    if not _sends_in_process or settings.WEBHOOKS_WORKER_SENDERS <= 0:
        return None
    if _senders is None or _senders_pid != os.getpid():
        with _lock:
            if _senders is None or _senders_pid != os.getpid():
                _senders = ThreadPoolExecutor(
                    settings.WEBHOOKS_WORKER_SENDERS, thread_name_prefix="webhook-sender"
                )
                _senders_pid = os.getpid()
    return _senders


def send_soon(leases: list[tuple[int, str]], ready=()) -> None:
    """Send these leased deliveries; `ready` (services.Ready) are those of them whose rows
    this process has in hand, which its senders need not read back."""
    senders = _pool()
    if senders is not None:
        in_hand = {r.delivery.pk: r for r in ready}
        for delivery_id, token in leases:
            senders.submit(_send, delivery_id, token, in_hand.get(delivery_id))
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
    send_in_process()


@signals.worker_shutdown.connect
def stop_senders(**kwargs) -> None:
    """Let attempts under way finish (at most the timeout); drop the queued ones, whose
    leases run out for the sweep."""
    global _senders, _sends_in_process
    _sends_in_process = False
    with _lock:
        pool, _senders = _senders, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
