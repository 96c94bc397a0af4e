"""The paid-invoice watcher: follows the node's settlement stream and marks invoices paid.

Exactly one watcher subscribes per node, however many workers run: it must hold a lease
(a row in WatcherState) and renews it while it streams; a watcher whose holder died is
taken over once the lease runs out. The settle index it has applied is stored in the same
transaction as the payments, so a crash, a restart or a node outage loses nothing and
applies nothing twice.

While it holds the lease, it also follows hold invoices (HoldTracker): their ACCEPTED and
CANCELED are on no settlement stream, so each open or accepted one gets a single-invoice
stream of its own, and held payments that near their HTLC expiry are canceled.
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
from .backends.base import LightningBackend, NodeError
from .models import Invoice, WatcherState

log = logging.getLogger("lightning.watcher")

MAX_BACKOFF_SECONDS = 30.0
HOLD_SCAN_SECONDS = 0.5  # how soon a new hold invoice gets its stream
HOLD_STREAM_SECONDS = 600.0  # a single-invoice stream is reopened this often (a dead one)


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


def seconds_until_free(node_key: str, most: float) -> float:
    """How long a standby should wait before it tries `node_key`'s lease again: until the
    holder's lease runs out (a killed holder's stream is taken over as soon as that is
    allowed, not up to a third of a lease later), but never more than `most`, so that a
    holder that renews is checked again in time."""
    rows = list(
        WatcherState.objects.filter(node_key=node_key).values_list("lease_expires_at", flat=True)
    )
    if not rows:
        return most
    expires = rows[0]
    if expires is None:
        return 0.05  # handed back by a holder that stopped: free now
    left = (expires - timezone.now()).total_seconds() + 0.05
    return min(most, max(0.05, left))


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
        self.hold_tracker: HoldTracker | None = None  # while it streams

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
                    self._stop.wait(seconds_until_free(node_key, self.lease_seconds / 3))
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
        tracker = None
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
            tracker = self.hold_tracker = HoldTracker(backend, self.holder)
            tracker.start()
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
            if tracker is not None:
                tracker.stop()
                self.hold_tracker = None


class HoldTracker:
    """Follows the open and accepted hold invoices of the backend while the watcher holds
    its lease: a thread that looks for them every HOLD_SCAN_SECONDS and, every
    HOLD_INVOICE_EXPIRY_CHECK_SECONDS, cancels held payments near their HTLC expiry; and a
    thread per invoice (at most HOLD_INVOICE_MAX_STREAMS, the newest first; the periodic
    reconciliation catches the others) that applies its single-invoice stream.

    A stream starts with the invoice's current state, so one opened again after it broke
    misses nothing. Every failure is logged and retried with backoff inside these threads:
    nothing here can stop the settlement stream, and `stop()` ends them all."""

    def __init__(self, backend: LightningBackend, holder: str):
        self.backend = backend
        self.holder = holder
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._streams: dict[str, _HoldStream] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hold-tracker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.cancel()
        deadline = time.monotonic() + timeout
        for thread in [self._thread, *(s.thread for s in streams)]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def following(self) -> set[str]:
        """The payment hashes that have a stream now."""
        with self._lock:
            return set(self._streams)

    def _run(self) -> None:
        backoff = 1.0
        checked_at = None
        failing = False
        try:
            while not self._stopped.is_set():
                try:
                    self._scan()
                    now = time.monotonic()
                    if (
                        checked_at is None
                        or now - checked_at >= settings.HOLD_INVOICE_EXPIRY_CHECK_SECONDS
                    ):
                        checked_at = now
                        services.cancel_expiring_hold_invoices()
                    if failing:
                        log.info("watcher %s: hold invoice tracking works again", self.holder)
                    backoff, failing = 1.0, False
                    self._stopped.wait(HOLD_SCAN_SECONDS)
                except Exception as exc:
                    level = logging.DEBUG if failing else logging.WARNING
                    log.log(
                        level,
                        "watcher %s: hold invoice tracking failed (%r); retrying with backoff",
                        self.holder,
                        exc,
                        exc_info=not isinstance(exc, NodeError | DatabaseError),
                    )
                    failing = True
                    connection.close()
                    self._stopped.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            connection.close()

    def _scan(self) -> None:
        """Start a stream for each hold invoice that should have one and has none; cancel
        those of invoices no longer open or accepted here (or beyond the limit)."""
        wanted = list(
            Invoice.objects.filter(
                backend=self.backend.name,
                hold=True,
                state__in=(Invoice.State.OPEN, Invoice.State.ACCEPTED),
            )
            .order_by("-pk")
            .values_list("payment_hash", flat=True)[: max(0, settings.HOLD_INVOICE_MAX_STREAMS)]
        )
        with self._lock:
            if self._stopped.is_set():
                return
            for payment_hash in set(self._streams) - set(wanted):
                self._streams.pop(payment_hash).cancel()
            for payment_hash in wanted:
                if payment_hash not in self._streams:
                    stream = _HoldStream(self, payment_hash)
                    self._streams[payment_hash] = stream
                    stream.thread.start()

    def _ended(self, stream: _HoldStream) -> None:
        with self._lock:
            if self._streams.get(stream.payment_hash) is stream:
                del self._streams[stream.payment_hash]


class _HoldStream:
    """One hold invoice's single-invoice stream, applied in its own thread until the invoice
    is final on the node, or the tracker cancels it."""

    def __init__(self, tracker: HoldTracker, payment_hash: str):
        self.tracker = tracker
        self.payment_hash = payment_hash
        self._canceled = threading.Event()
        self._lock = threading.Lock()
        self._updates = None
        self._failing = False
        self._backoff = 1.0
        self.thread = threading.Thread(
            target=self._run, name=f"hold-{payment_hash[:12]}", daemon=True
        )

    def cancel(self) -> None:
        with self._lock:
            self._canceled.set()
            updates = self._updates
        if updates is not None:
            updates.close()

    def _run(self) -> None:
        try:
            while not self._canceled.is_set():
                opened = time.monotonic()
                try:
                    if self._follow():
                        return  # final on the node, and applied here
                except Exception as exc:
                    log.log(
                        logging.DEBUG if self._failing else logging.WARNING,
                        "watcher %s: stream of hold invoice %s failed (%r); reopening with backoff",
                        self.tracker.holder,
                        self.payment_hash,
                        exc,
                        exc_info=not isinstance(exc, NodeError | DatabaseError),
                    )
                    self._failing = True
                    connection.close()
                else:
                    if time.monotonic() - opened >= HOLD_STREAM_SECONDS / 2:
                        continue  # its timeout ended it: reopen at once
                # Broke, or ended early with no final state (a node going down): pause, so
                # a node that ends each stream at once is not asked in a loop.
                self._canceled.wait(self._backoff)
                self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            self.tracker._ended(self)
            connection.close()

    def _follow(self) -> bool:
        """Apply the stream until it ends. True when the invoice is final on the node."""
        updates = self.tracker.backend.subscribe_single(
            self.payment_hash, timeout=HOLD_STREAM_SECONDS
        )
        with self._lock:
            if self._canceled.is_set():
                updates.close()
                return False
            self._updates = updates
        try:
            for update in updates:
                services.apply_invoice_update(update)
                if self._failing:
                    log.info(
                        "watcher %s: following hold invoice %s again",
                        self.tracker.holder,
                        self.payment_hash,
                    )
                self._failing, self._backoff = False, 1.0
                if update.state in ("SETTLED", "CANCELED"):
                    return True
            return False
        finally:
            updates.close()
            with self._lock:
                self._updates = None
