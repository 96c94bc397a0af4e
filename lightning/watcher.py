"""The paid-invoice watcher: follows the node's settlement stream and marks invoices paid.

Exactly one watcher subscribes per node, however many workers run: it must hold a lease
(a row in WatcherState) and renews it while it streams; a watcher whose holder died is
taken over once the lease runs out. The settle index it has applied is stored in the same
transaction as the payments, so a crash, a restart or a node outage loses nothing and
applies nothing twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from . import services
from .backends import get_backend
from .backends.base import NodeError
from .models import WatcherState

log = logging.getLogger("lightning.watcher")

MAX_BACKOFF_SECONDS = 30.0


def make_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(node_key: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease on `node_key`'s stream. True when `holder` holds it."""
    now = timezone.now()
    try:
        WatcherState.objects.get_or_create(node_key=node_key)
    except IntegrityError:
        pass  # another watcher created the row at the same moment
    taken = (
        WatcherState.objects.filter(node_key=node_key)
        .filter(
            Q(lease_holder=holder) | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
        )
        .update(
            lease_holder=holder,
            lease_expires_at=now + timedelta(seconds=seconds),
            heartbeat_at=now,
        )
    )
    return taken == 1


def release_lease(node_key: str, holder: str) -> None:
    WatcherState.objects.filter(node_key=node_key, lease_holder=holder).update(
        lease_expires_at=None
    )


class Watcher:
    """Run with `run()` in a thread; `stop()` ends it and hands the lease back.

    Nothing stops it but `stop()`: whatever goes wrong (the node, the database, a bug), it
    logs what happened, backs off and starts over from the settle index it stored."""

    def __init__(self, holder: str | None = None):
        self.holder = holder or make_holder_id()
        self.lease_seconds = settings.WATCHER_LEASE_SECONDS
        self._stop = threading.Event()
        self._status = None  # the state we last logged
        self._status_since = 0.0
        self._reminded_at = 0.0
        self._failures = 0

    def stop(self) -> None:
        self._stop.set()

    def _say(self, status: str, message: str, *args, level=logging.INFO, exc_info=False) -> None:
        """Log each change of state once; while a failure goes on, remind every
        WATCHER_LOG_REMINDER_SECONDS that it still does."""
        now = time.monotonic()
        if status != self._status:
            self._status, self._status_since, self._reminded_at = status, now, now
            self._failures = 1
            log.log(level, message, *args, exc_info=exc_info)
            return
        self._failures += 1
        if (
            level >= logging.WARNING
            and now - self._reminded_at >= settings.WATCHER_LOG_REMINDER_SECONDS
        ):
            self._reminded_at = now
            log.log(
                level,
                message + " (still failing: %d attempts in %.0f s)",
                *args,
                self._failures,
                now - self._status_since,
            )

    def run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            node_key = None
            try:
                backend = get_backend()
                info = backend.get_info()
                node_key = f"{backend.name}:{info.pubkey}"
                if not acquire_lease(node_key, self.holder, self.lease_seconds):
                    # The node and the database answered: whatever failed before is over,
                    # so the next failure backs off from the start again. (A standby that
                    # kept a long backoff took up to MAX_BACKOFF_SECONDS to notice a dead
                    # holder's lease had run out.)
                    backoff = 1.0
                    self._say(
                        "standby",
                        "watcher %s: another watcher holds %s; standing by",
                        self.holder,
                        node_key,
                    )
                    self._stop.wait(self.lease_seconds / 3)
                    continue
                self._follow(backend, node_key)
                backoff = 1.0
                continue
            except services.LeaseLost as exc:
                self._say("lost", "watcher %s: %s", self.holder, exc, level=logging.WARNING)
                continue
            except NodeError as exc:
                self._say(
                    "down",
                    "watcher %s: node unavailable (%s); retrying with backoff",
                    self.holder,
                    exc,
                    level=logging.WARNING,
                )
            except DatabaseError as exc:
                self._say(
                    "db",
                    "watcher %s: database error (%s); retrying with backoff",
                    self.holder,
                    exc,
                    level=logging.WARNING,
                )
            except Exception as exc:
                self._say(
                    f"error:{type(exc).__name__}",
                    "watcher %s: unexpected error (%r); retrying with backoff",
                    self.holder,
                    exc,
                    level=logging.ERROR,
                    exc_info=True,
                )
            finally:
                if self._stop.is_set() and node_key:
                    try:
                        release_lease(node_key, self.holder)
                    except DatabaseError:
                        pass
            # A failure: start over on a fresh connection (never one left inside a
            # transaction), after a pause that grows while the failure lasts.
            connection.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        close_old_connections()
        connection.close()

    def _renew(self, node_key: str) -> None:
        if not acquire_lease(node_key, self.holder, self.lease_seconds):
            raise services.LeaseLost(f"lease on {node_key} taken over")

    def _follow(self, backend, node_key: str) -> None:
        """Holding the lease: reconcile, then apply the stream until stopped or lost."""
        start_index = WatcherState.objects.get(node_key=node_key).settle_index
        # Subscribe before reconciling: LND replays no backlog from settle index 0, so a
        # settlement is caught either by the reconciliation (before) or the stream (after).
        subscription = backend.subscribe_settlements(start_index)
        try:
            # With a stored settle index the stream replays every settlement since; only
            # what it never carries (hold invoices' states) is asked for one by one.
            renew_every = self.lease_seconds / 3
            counts = services.reconcile_invoices(
                full=start_index == 0, between_pages=lambda: self._renew(node_key)
            )
            if counts["paid"] or counts["canceled"]:
                log.info("watcher %s: reconciled at start: %s", self.holder, counts)
            self._say(
                "streaming",
                "watcher %s: streaming %s from settle index %s",
                self.holder,
                node_key,
                start_index,
            )
            renewed_at = time.monotonic()
            while not self._stop.is_set():
                batch = subscription.next_batch(timeout=min(0.5, renew_every))
                if batch:
                    services.apply_settlements(batch, node_key=node_key, holder=self.holder)
                if time.monotonic() - renewed_at >= renew_every:
                    self._renew(node_key)
                    renewed_at = time.monotonic()
        finally:
            subscription.close()
