"""The rules of payments. Every state change of an Invoice is a conditional UPDATE inside a
transaction, recorded in InvoiceTransition, so a duplicate event, a second watcher or a
replay never pays (or expires) anything twice. The other apps react to a change through
lightning.reactions, which cannot fail it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from contextlib import nullcontext
from datetime import timedelta
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.money import MAX_MSAT
from config.prepared import Prepared, columns, insert, update

from . import reactions
from .backends import get_backend
from .backends.base import (
    InvoiceNotFound,
    NodeError,
    NodeInvoice,
    Payment,
    PaymentFailed,
    PaymentStatus,
)
from .models import Invoice, InvoiceTransition, PendingReaction, WatcherState
from .signals import invoice_paid

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_EXPIRY_SECONDS = 30 * 24 * 3600


class LeaseLost(Exception):
    """Another watcher took over this node's stream; nothing of this batch was applied."""


def create_invoice(
    amount_msat: int,
    memo: str = "",
    expiry_seconds: int = 900,
    purpose: str = "",
    *,
    description_hash: str = "",
    then: Callable[[Invoice], T] | None = None,
) -> Invoice | T:
    """Ask the node for an invoice, then record it. Raises backends.base.NodeError.

    The node is asked first, outside any transaction (a node call may take seconds, and on
    SQLite a transaction holds the one write lock). Then the Invoice and whatever `then`
    writes for it (a checkout, a challenge, an order) are written in one short transaction,
    so a failure leaves no Invoice without what it was made for. The dev node, which only
    writes a row here, is asked inside that transaction. Returns `then(invoice)`
    when given, else the invoice. Call it outside a transaction."""
    _check_amount_and_expiry(amount_msat, expiry_seconds)
    backend = get_backend()
    with _node_transaction(backend):
        node_invoice = backend.create_invoice(amount_msat, memo, expiry_seconds, description_hash)
        return _record(backend.name, node_invoice, hold=False, purpose=purpose, then=then)


def create_hold_invoice(
    payment_hash: str,
    amount_msat: int,
    memo: str = "",
    expiry_seconds: int = 900,
    purpose: str = "",
    *,
    description_hash: str = "",
    then: Callable[[Invoice], T] | None = None,
) -> Invoice | T:
    """A hold invoice for `payment_hash`. Raises DuplicateInvoice (the node has one for
    that hash) or another NodeError."""
    _check_amount_and_expiry(amount_msat, expiry_seconds)
    backend = get_backend()
    with _node_transaction(backend):
        node_invoice = backend.create_hold_invoice(
            payment_hash, amount_msat, memo, expiry_seconds, description_hash
        )
        return _record(backend.name, node_invoice, hold=True, purpose=purpose, then=then)


def _check_amount_and_expiry(amount_msat: int, expiry_seconds: int) -> None:
    if not isinstance(amount_msat, int) or amount_msat < 1000 or amount_msat % 1000:
        raise ValueError("amount_msat must be a whole number of sats, at least 1 sat")
    if amount_msat > MAX_MSAT:
        raise ValueError(f"amount_msat must be at most {MAX_MSAT}")
    if not 1 <= expiry_seconds <= MAX_EXPIRY_SECONDS:
        raise ValueError(f"expiry_seconds must be between 1 and {MAX_EXPIRY_SECONDS}")


def _node_transaction(backend):
    """Around asking the node for an invoice and recording it: nothing for a node elsewhere
    (its call stays outside our transaction), one transaction for the dev node, whose row
    then commits with ours, in one commit instead of two."""
    return transaction.atomic() if backend.in_our_database else nullcontext()


def _record(backend_name: str, node_invoice: NodeInvoice, hold: bool, purpose: str, then):
    # Without a savepoint when it runs inside the dev node's transaction: a failure rolls
    # back both rows.
    with transaction.atomic(savepoint=False):
        invoice = insert(
            Invoice(
                payment_hash=node_invoice.payment_hash,
                bolt11=node_invoice.bolt11,
                amount_msat=node_invoice.amount_msat,
                memo=node_invoice.memo,
                created_at=node_invoice.created_at,
                expires_at=node_invoice.expires_at,
                hold=hold,
                backend=backend_name,
                purpose=purpose,
            )
        )
        return invoice if then is None else then(invoice)


def settle_hold_invoice(invoice: Invoice, preimage: str) -> None:
    """Release a held (accepted) payment. The watcher marks the invoice paid when the node
    reports it. Raises PaymentFailed when the node refuses (not accepted, or canceled)."""
    get_backend().settle_hold_invoice(preimage)


CANCELABLE = (Invoice.State.OPEN, Invoice.State.ACCEPTED)


def cancel_hold_invoice(invoice: Invoice, *, reason: str = Invoice.CancelReason.MERCHANT) -> bool:
    """Cancel an open or accepted hold invoice on the node (a held payment goes back to the
    payer), then here, recording `reason`. Raises PaymentFailed when the node already
    settled it. Returns whether this call canceled it."""
    return _cancel(invoice.pk, invoice.payment_hash, CANCELABLE, reason)


def _cancel(pk: int, payment_hash: str, from_states, reason: str) -> bool:
    """Cancel on the node, then here with `reason`. The reason is written first: the
    watcher's stream of this invoice may see the node's CANCELED before this call records
    it, and it then records this reason, not "node". Returns whether this call canceled it
    (whichever of the two recorded it)."""
    cancelable = Invoice.objects.filter(pk=pk, state__in=from_states)
    asked = cancelable.update(canceled_reason=reason)
    try:
        get_backend().cancel_hold_invoice(payment_hash)
    except Exception:
        cancelable.filter(canceled_reason=reason).update(canceled_reason="")
        raise
    changed = _transition(pk, list(from_states), Invoice.State.CANCELED, canceled_reason=reason)
    return changed or bool(
        asked and Invoice.objects.filter(pk=pk, state=Invoice.State.CANCELED).exists()
    )


def take_off_node(invoice: Invoice) -> str:
    """Prepare one of our own open invoices for an internal payment (a wallet of this
    gateway pays it): cancel it on the node, so nobody outside can pay it as well, and
    return its preimage (the payer's proof of payment). Raises PaymentFailed when the node
    no longer has it open (paid meanwhile, expired), NodeError when the node is down.

    Regular invoices only: the node knows their preimage from the start."""
    backend = get_backend()
    node_invoice = backend.lookup_invoice(invoice.payment_hash)
    if node_invoice.state != "OPEN":
        raise PaymentFailed(f"the invoice is {node_invoice.state.lower()} on the node")
    if not node_invoice.preimage:
        raise PaymentFailed("a hold invoice cannot be paid internally")
    # Marked first, so that whoever sees the node's CANCELED meanwhile (the watcher, a
    # status poll) leaves the invoice open for the internal payment to settle.
    marked = Invoice.objects.filter(pk=invoice.pk, state=Invoice.State.OPEN, canceled_reason="")
    if not marked.update(canceled_reason=Invoice.CancelReason.INTERNAL):
        raise PaymentFailed("the invoice is no longer open")
    try:
        # LND's CancelInvoice takes any open invoice, not only hold invoices.
        backend.cancel_hold_invoice(invoice.payment_hash)
    except Exception:
        Invoice.objects.filter(
            pk=invoice.pk, state=Invoice.State.OPEN, canceled_reason=Invoice.CancelReason.INTERNAL
        ).update(canceled_reason="")
        raise
    return node_invoice.preimage


def settle_internally(invoice: Invoice, preimage: str) -> bool:
    """Mark an invoice that `take_off_node` prepared paid by a payment inside this gateway,
    with its reactions (the payee's wallet is credited). Call it inside the transaction
    that debits the payer, so both sides commit together. Returns whether it changed."""
    if hashlib.sha256(bytes.fromhex(preimage)).hexdigest() != invoice.payment_hash:
        raise ValueError("the preimage does not match the invoice")
    return _transition(
        invoice.pk,
        [Invoice.State.OPEN],
        Invoice.State.PAID,
        paid_at=timezone.now(),
        amount_paid_msat=invoice.amount_msat,
        preimage=preimage,
        canceled_reason="",
    )


def _transition(invoice_id: int, from_states, to_state, **fields) -> bool:
    now = timezone.now()
    with transaction.atomic():
        for from_state in from_states:
            changed = Invoice.objects.filter(pk=invoice_id, state=from_state).update(
                state=to_state, **fields
            )
            if changed:
                InvoiceTransition.objects.create(
                    invoice_id=invoice_id,
                    from_state=from_state,
                    to_state=to_state,
                    at=now,
                    settle_index=fields.get("settle_index"),
                )
                reactions.react(Invoice.objects.get(pk=invoice_id), from_state, to_state)
                return True
    return False


# The invoice a settlement pays, locked: one settlement is what the watcher applies as
# payments come in, so its read is prepared (a batch, after an outage, is read in one query).
_invoice_to_settle = Prepared(
    lambda payment_hash: (
        Invoice.objects.select_for_update()
        .filter(payment_hash=payment_hash)
        .values_list(*columns(Invoice))
    )
)
PAYABLE_STATES = (Invoice.State.OPEN, Invoice.State.ACCEPTED, Invoice.State.EXPIRED)
_PAID_FIELDS = ("state", "paid_at", "amount_paid_msat", "settle_index", "preimage")


def _locked_invoices(payment_hashes: list[str]) -> list[Invoice]:
    if len(payment_hashes) == 1:
        return _invoice_to_settle.instances(Invoice, payment_hashes[0])
    return list(
        Invoice.objects.select_for_update().filter(payment_hash__in=payment_hashes).order_by("pk")
    )


def apply_settlements(
    settlements: list[NodeInvoice], node_key: str | None = None, holder: str | None = None
) -> list[Invoice]:
    """Mark the invoices of these node settlements paid, each at most once, in one
    transaction. With `node_key`/`holder` (the watcher), the node's settle index advances
    in the same transaction, and only while `holder` still holds the lease.

    A settlement always wins over an expiry that raced it: an expired invoice that the node
    settled becomes paid, with the node's settle time (so `paid_late` shows it).
    Returns the invoices this call marked paid.
    """
    settled = [s for s in settlements if s.state == "SETTLED"]
    now = timezone.now()
    paid = []
    with transaction.atomic():
        # Locked, so that each row read here is the row as the update below leaves it, with
        # the fields it writes (the reactions get them without reading them back).
        known = {
            invoice.payment_hash: invoice
            for invoice in _locked_invoices([s.payment_hash for s in settled])
        }
        transitions = []
        for s in settled:
            invoice = known.get(s.payment_hash)
            if invoice is None:
                continue  # made on the node by someone else: not ours to track
            from_state = invoice.state
            if from_state not in PAYABLE_STATES:
                continue  # paid already (a replay), or canceled
            invoice.state = Invoice.State.PAID
            invoice.paid_at = s.settled_at or now
            invoice.amount_paid_msat = s.amount_paid_msat or s.amount_msat
            invoice.settle_index = s.settle_index
            invoice.preimage = s.preimage
            # Conditional as every change of state; the lock makes the state read current.
            if update(invoice, _PAID_FIELDS, only_if=("state", from_state)):
                transitions.append(
                    InvoiceTransition(
                        invoice_id=invoice.pk,
                        from_state=from_state,
                        to_state=Invoice.State.PAID,
                        at=now,
                        settle_index=s.settle_index,
                    )
                )
                paid.append(invoice)
        if len(transitions) == 1:  # as payments come in: prepared
            insert(transitions[0])
        else:
            InvoiceTransition.objects.bulk_create(transitions)
        if node_key is not None:
            top = max((s.settle_index or 0 for s in settlements), default=0)
            state = WatcherState(
                node_key=node_key, settle_index=top, last_event_at=now, heartbeat_at=now
            )
            advanced = update(
                state,
                ("settle_index", "last_event_at", "heartbeat_at"),
                only_if=("lease_holder", holder),
            )
            if not advanced:
                raise LeaseLost(f"lease on {node_key} is no longer held by {holder}")
        from_states = {t.invoice_id: t.from_state for t in transitions}
        for invoice in paid:
            reactions.react(invoice, from_states[invoice.pk], Invoice.State.PAID)
        if paid:
            transaction.on_commit(lambda: _announce_paid(paid))
    return paid


def _announce_paid(invoices: list[Invoice]) -> None:
    for invoice in invoices:
        invoice_paid.send_robust(sender=Invoice, invoice=invoice)


def expire_invoices(now=None) -> int:
    """Mark open invoices past their expiry expired (never an accepted hold invoice: its
    payment is held, and only a settle or a cancel ends it). Returns how many changed."""
    now = now or timezone.now()
    ids = list(
        Invoice.objects.filter(state=Invoice.State.OPEN, expires_at__lte=now).values_list(
            "pk", flat=True
        )[:5000]
    )
    return sum(_transition(pk, [Invoice.State.OPEN], Invoice.State.EXPIRED) for pk in ids)


def refresh_from_node(invoice: Invoice) -> Invoice:
    """The invoice, after asking the node about it if it is still open (or accepted) here:
    a buyer who shows a preimage may be a moment ahead of the watcher. A node that does not
    answer leaves the invoice as it is (logged); the watcher catches up later."""
    if invoice.state not in (Invoice.State.OPEN, Invoice.State.ACCEPTED):
        return invoice
    try:
        node_invoice = get_backend().lookup_invoice(invoice.payment_hash)
    except NodeError as exc:
        log.warning("could not look up invoice %s: %s", invoice.payment_hash, exc)
        return invoice
    if node_invoice.state == "OPEN":
        return invoice  # nothing new: no write, no second read (the page polls this)
    apply_invoice_update(node_invoice)
    # Whoever applied it (this call, or a concurrent one that won the update), the row
    # has it now.
    invoice.refresh_from_db()
    return invoice


def apply_invoice_update(node_invoice: NodeInvoice) -> str | None:
    """Apply what the node says of one invoice (a lookup, or an update on its single-invoice
    stream), each change at most once. Returns the state this call moved it to, if any.

    - SETTLED: paid (from open, accepted or expired), as from the settlement stream;
    - ACCEPTED: accepted (from open, or expired: the payment arrived before our expiry
      sweep saw it), with the lowest expiry height of the held HTLCs;
    - CANCELED: an open invoice past its expiry is expired (the node cancels those); any
      other open or accepted one is canceled, with the reason of the cancel we asked the
      node for (see _cancel), else reason "node".
    """
    if node_invoice.state == "SETTLED":
        return Invoice.State.PAID if apply_settlements([node_invoice]) else None
    found = (
        Invoice.objects.filter(payment_hash=node_invoice.payment_hash)
        .values_list("pk", "state", "expires_at", "canceled_reason")
        .first()
    )
    if found is None:
        return None  # made on the node by someone else: not ours to track
    pk, state, expires_at, reason = found
    now = timezone.now()
    if node_invoice.state == "ACCEPTED":
        expiry_height = node_invoice.htlc_expiry_height
        if state == Invoice.State.ACCEPTED:
            if expiry_height is not None:  # another HTLC of a multi-part payment arrived
                Invoice.objects.filter(pk=pk, state=state).exclude(
                    htlc_expiry_height=expiry_height
                ).update(htlc_expiry_height=expiry_height)
            return None
        accepted = _transition(
            pk,
            [Invoice.State.OPEN, Invoice.State.EXPIRED],
            Invoice.State.ACCEPTED,
            accepted_at=now,
            htlc_expiry_height=expiry_height,
        )
        return Invoice.State.ACCEPTED if accepted else None
    if node_invoice.state == "CANCELED":
        if state == Invoice.State.OPEN and reason == Invoice.CancelReason.INTERNAL:
            return None  # an internal payment is settling it (take_off_node)
        if state == Invoice.State.OPEN and expires_at <= now and not reason:
            expired = _transition(pk, [Invoice.State.OPEN], Invoice.State.EXPIRED)
            return Invoice.State.EXPIRED if expired else None
        canceled = _transition(
            pk,
            list(CANCELABLE),
            Invoice.State.CANCELED,
            # A reason already written is that of a cancel we asked for (see _cancel).
            canceled_reason=reason or Invoice.CancelReason.NODE,
        )
        return Invoice.State.CANCELED if canceled else None
    return None


RECONCILE_PAGE = 200


def reconcile_invoices(full: bool = False, between_pages: Callable[[], None] | None = None) -> dict:
    """Ask the node about what its settlement stream does not tell, and apply the answers:

    - open and accepted hold invoices (the stream carries neither ACCEPTED nor CANCELED;
      the watcher follows each one's single-invoice stream too, up to
      HOLD_INVOICE_MAX_STREAMS of them, and this catches the others);
    - with `full`, every open invoice and those that expired in the last day (a late
      settlement still pays them): needed only when no settle index is stored yet, since
      LND replays nothing from settle index 0, or when an operator asks for it.

    Pages of RECONCILE_PAGE invoices; `between_pages` runs after each (the watcher renews
    its lease there, and may raise to stop). A node error on one invoice is logged and the
    others go on. Then it expires what is overdue and cancels held payments that near
    their HTLC expiry (`cancel_expiring_hold_invoices`). Safe to run at any time, by anyone."""
    backend = get_backend()
    live = Q(state__in=(Invoice.State.OPEN, Invoice.State.ACCEPTED))
    if full:
        since = timezone.now() - timedelta(days=1)
        live |= Q(state=Invoice.State.EXPIRED, expires_at__gte=since)
    else:
        live &= Q(hold=True)  # the index of hold invoices: no scan of the whole table
    candidates = Invoice.objects.filter(live, backend=backend.name)
    counts = {"checked": 0, "paid": 0, "accepted": 0, "canceled": 0, "errors": 0}
    after = 0
    while True:
        page = list(
            candidates.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", "payment_hash", "state")[:RECONCILE_PAGE]
        )
        if not page:
            break
        for _pk, payment_hash, _state in page:
            counts["checked"] += 1
            try:
                node_invoice = backend.lookup_invoice(payment_hash)
            except InvoiceNotFound:
                log.warning("invoice %s is unknown to the node", payment_hash)
                continue
            except NodeError as exc:
                counts["errors"] += 1
                log.warning("reconcile: could not look up invoice %s: %s", payment_hash, exc)
                continue
            changed = apply_invoice_update(node_invoice)
            if changed in (Invoice.State.PAID, Invoice.State.ACCEPTED, Invoice.State.CANCELED):
                counts[changed] += 1
        after = page[-1][0]
        if between_pages is not None:
            between_pages()
    expire_invoices()
    try:
        counts["canceled"] += cancel_expiring_hold_invoices()
    except NodeError as exc:
        counts["errors"] += 1
        log.warning("reconcile: could not check held payments' HTLC expiry: %s", exc)
    return counts


def cancel_expiring_hold_invoices(block_height: int | None = None) -> int:
    """Cancel each accepted hold invoice whose held HTLCs expire within
    HOLD_INVOICE_CANCEL_BLOCKS_BEFORE_EXPIRY blocks of `block_height` (default: the node's
    height now), on the node and then here with reason "htlc_expiry", which tells the
    merchant: the payer gets the money back before the node would have to fail the HTLC
    (LND does that `holdexpirydelta`, 12, blocks before expiry) or a channel would close.
    One that the node already settled is marked paid instead. Returns how many were
    canceled. Raises NodeError only when the node's height cannot be had."""
    backend = get_backend()
    if block_height is None:
        block_height = backend.get_info().block_height
    margin = settings.HOLD_INVOICE_CANCEL_BLOCKS_BEFORE_EXPIRY
    due = list(
        Invoice.objects.filter(
            backend=backend.name,
            state=Invoice.State.ACCEPTED,
            htlc_expiry_height__lte=block_height + margin,
        )
        .order_by("htlc_expiry_height")
        .values_list("pk", "payment_hash", "htlc_expiry_height")[:RECONCILE_PAGE]
    )
    canceled = 0
    for pk, payment_hash, expiry_height in due:
        try:
            this_call = _cancel(
                pk, payment_hash, [Invoice.State.ACCEPTED], Invoice.CancelReason.HTLC_EXPIRY
            )
        except PaymentFailed:
            # Settled on the node meanwhile (a cancel cannot undo that): it is paid.
            try:
                apply_invoice_update(backend.lookup_invoice(payment_hash))
            except NodeError as exc:
                log.warning("could not look up hold invoice %s: %s", payment_hash, exc)
            continue
        except NodeError as exc:
            log.warning(
                "could not cancel hold invoice %s near its HTLC expiry (height %s of %s): %s",
                payment_hash,
                block_height,
                expiry_height,
                exc,
            )
            continue
        if this_call:
            canceled += 1
            log.warning(
                "hold invoice %s canceled: its held payment was neither settled nor canceled "
                "and its HTLC expires at height %s (now %s)",
                payment_hash,
                expiry_height,
                block_height,
            )
    return canceled


def watcher_status(node_key: str) -> dict:
    """What /api/health says of the watcher: where it is in the stream, and how long ago a
    watcher last renewed its lease or applied a batch (`heartbeatAgeSeconds`; `stale` when
    that is more than WATCHER_HEALTH_MAX_AGE_SECONDS, or no watcher ever ran)."""
    state = WatcherState.objects.filter(node_key=node_key).first()
    heartbeat = state.heartbeat_at if state else None
    age = (timezone.now() - heartbeat).total_seconds() if heartbeat else None
    return {
        "settleIndex": state.settle_index if state else 0,
        "lastEventAt": state.last_event_at.isoformat() if state and state.last_event_at else None,
        "heartbeatAgeSeconds": round(age, 1) if age is not None else None,
        "stale": age is None or age > settings.WATCHER_HEALTH_MAX_AGE_SECONDS,
        "pendingReactions": PendingReaction.objects.count(),
    }


def lookup_on_node(invoice: Invoice) -> NodeInvoice:
    """The invoice as the node has it now. Raises NodeError (InvoiceNotFound)."""
    return get_backend().lookup_invoice(invoice.payment_hash)


# Outgoing payments, for the wallet service (only lightning/ may import lightning.backends).


def pay_invoice(bolt11: str, fee_limit_msat: int, timeout_seconds: float) -> Payment:
    """Hand a BOLT11 invoice to the node and wait up to `timeout_seconds` for the outcome.

    Raises PaymentFailed (certainly failed: nothing went out), PaymentInFlight (the outcome
    is unknown: never send it again, ask track_payment) or another NodeError. Call it
    outside a transaction: it may take `timeout_seconds`."""
    return get_backend().pay_invoice(
        bolt11, timeout_seconds=timeout_seconds, fee_limit_msat=fee_limit_msat
    )


def track_payment(payment_hash: str) -> PaymentStatus:
    """The node's view of a payment sent earlier (IN_FLIGHT, SUCCEEDED or FAILED), sending
    nothing. Raises PaymentNotFound when the node never took a payment for this hash."""
    return get_backend().track_payment(payment_hash)
