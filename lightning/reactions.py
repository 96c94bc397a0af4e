"""What the other apps do when an invoice changes state, inside the transaction of the change.

An app registers a reaction for the invoices it sold (`purpose`) with `@reaction(...)`. The
reaction writes what must commit with the change: an outbox row, an order's state, a due
receipt. It does no I/O of its own.

A payment is recorded whatever a reaction does: each reaction runs in its own savepoint, so
one that raises is rolled back alone; the change and the other reactions commit. The failure
is logged with the invoice and kept as a PendingReaction, which `retry_pending_reactions`
(Celery beat) runs again, with backoff, until it succeeds: a side effect is late, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import Invoice, PendingReaction

log = logging.getLogger("lightning.reactions")

MAX_RETRY_DELAY = timedelta(hours=1)


@dataclass(frozen=True)
class Reaction:
    name: str
    purpose: str
    func: Callable[[Invoice, str, str], None]


_reactions: dict[str, Reaction] = {}

ANY_PURPOSE = "*"


def reaction(name: str, purpose: str):
    """Register `func(invoice, from_state, to_state)` for state changes of the invoices
    whose `purpose` is `purpose` (ANY_PURPOSE: of every invoice, as the wallets' ledger
    needs). `name` is stable: it identifies a pending retry."""

    def register(func):
        _reactions[name] = Reaction(name, purpose, func)
        return func

    return register


def unregister(name: str) -> None:
    """Forget a reaction (tests register their own, then take them away)."""
    _reactions.pop(name, None)


def registered() -> dict[str, Reaction]:
    return dict(_reactions)


def react(invoice: Invoice, from_state: str, to_state: str) -> None:
    """Run the reactions to this change. Inside the transaction of the change."""
    for found in _reactions.values():
        if found.purpose not in (invoice.purpose, ANY_PURPOSE):
            continue
        try:
            with transaction.atomic():  # a savepoint: a failure undoes this reaction only
                found.func(invoice, from_state, to_state)
        except Exception as exc:
            log.exception(
                "reaction %s to invoice %s (%s -> %s) failed; the change is recorded and the "
                "reaction will be retried",
                found.name,
                invoice.payment_hash,
                from_state,
                to_state,
            )
            PendingReaction.objects.create(
                invoice=invoice,
                name=found.name,
                from_state=from_state,
                to_state=to_state,
                attempts=1,
                last_error=_describe(exc),
                next_attempt_at=timezone.now() + _delay(1),
            )


def retry_pending_reactions(limit: int = 100) -> dict:
    """Run the reactions that failed, oldest first, each in its own transaction: it is
    deleted in the transaction that runs it, so it succeeds exactly once."""
    now = timezone.now()
    due = list(PendingReaction.objects.filter(next_attempt_at__lte=now).order_by("id")[:limit])
    # Their invoices apart, not joined: with the invoice table first in a join, planners
    # misjudging an empty reaction table read all the invoices every ten seconds.
    invoices = Invoice.objects.in_bulk([pending.invoice_id for pending in due])
    for pending in due:
        pending.invoice = invoices[pending.invoice_id]
    counts = {"done": 0, "failed": 0}
    for pending in due:
        found = _reactions.get(pending.name)
        try:
            with transaction.atomic():
                if not PendingReaction.objects.filter(pk=pending.pk).delete()[0]:
                    continue  # another sweep ran it
                if found is not None:
                    found.func(pending.invoice, pending.from_state, pending.to_state)
                else:
                    log.warning("dropping pending reaction %s: no longer registered", pending.name)
            counts["done"] += 1
        except Exception as exc:
            attempts = pending.attempts + 1
            log.warning(
                "reaction %s to invoice %s failed again (attempt %s): %s",
                pending.name,
                pending.invoice.payment_hash,
                attempts,
                _describe(exc),
            )
            PendingReaction.objects.filter(pk=pending.pk).update(
                attempts=attempts,
                last_error=_describe(exc),
                next_attempt_at=timezone.now() + _delay(attempts),
            )
            counts["failed"] += 1
    return counts


def _delay(attempts: int) -> timedelta:
    return min(timedelta(seconds=5 * 2 ** (attempts - 1)), MAX_RETRY_DELAY)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]
