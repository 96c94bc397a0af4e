"""The rules of wallets: the ledger, receiving, and paying out exactly once.

Every change of a balance is a LedgerEntry written with a conditional UPDATE of the cached
total in the same transaction; a debit that would take the balance below zero changes
nothing and raises InsufficientBalance, whatever runs concurrently (the UPDATE locks the
wallet's row on PostgreSQL; SQLite has one writer).

Paying out: the payment row, with its amount and fee limit reserved, commits before the
node is asked; the node's answer then settles it (debit amount + fee, the rest of the fee
reserve returned) or fails it (everything returned). When the node cannot say yet, the
payment stays pending, and `resolve_pending_payments` asks the node (track_payment, never
a second send) once the sender's claim has run out: after a crash, it ends as the node says.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from checkout.models import Merchant
from config.prepared import Prepared, columns, insert, update
from lightning import invoice_codec
from lightning import services as lightning_services
from lightning.backends.base import (
    DuplicateInvoice,
    NodeError,
    PaymentFailed,
    PaymentInFlight,
    PaymentNotFound,
)
from lightning.models import Invoice

from . import events, live, signals
from .models import LedgerEntry, Payment, Wallet

log = logging.getLogger(__name__)

PURPOSE = "wallet"  # invoices made through the wallet API
CANCEL_REASONS = {
    Invoice.CancelReason.MERCHANT: "canceled by the merchant",
    Invoice.CancelReason.HTLC_EXPIRY: (
        "canceled before its HTLC expiry, so the payer's funds are not locked: settle held "
        "payments sooner"
    ),
    Invoice.CancelReason.NODE: "canceled by the node",
}


class InsufficientBalance(Exception):
    def __init__(self, available_msat: int, needed_msat: int):
        self.available_msat = available_msat
        self.needed_msat = needed_msat
        super().__init__(
            f"Insufficient balance: the wallet has {available_msat // 1000} sats available; "
            f"this payment needs {math.ceil(needed_msat / 1000)} sats (amount + fee reserve)."
        )


class NotPayable(Exception):
    """The invoice cannot be paid at all (malformed, expired, no amount, our own)."""

    def __init__(self, error: str, message: str):
        self.error = error
        super().__init__(message)


# --- wallets and the ledger --------------------------------------------------------------


def wallet_for(merchant: Merchant) -> Wallet:
    """The merchant's wallet, made on first use (get_or_create reads it again when another
    request made it at the same moment)."""
    return Wallet.objects.get_or_create(
        merchant=merchant, owner=Wallet.Owner.MERCHANT, defaults={"name": merchant.name}
    )[0]


# A merchant's wallet, once made, is never deleted (PROTECT) nor replaced, so each process
# remembers its id (keyed by the merchant's random public id, never reused): recording a
# sale does not read the wallet again. Remembered only once the wallet has committed.
_wallet_ids: dict[tuple[int, str], int] = {}


def wallet_id_for(merchant: Merchant) -> int:
    key = (merchant.pk, merchant.public_id)
    found = _wallet_ids.get(key)
    if found is None:
        found = wallet_for(merchant).pk
        transaction.on_commit(lambda: _wallet_ids.__setitem__(key, found))
    return found


def _move(
    payment: Payment, kind: str, amount_msat: int, invoice: Invoice | None = None
) -> int | None:
    """One ledger entry and its change of the cached balance. Inside a transaction.
    Returns the new balance, or None when it could not be read back with the change (a
    SQLite older than 3.35) or nothing moved."""
    if amount_msat == 0:
        return None
    balance = _add_to_balance(payment.wallet_id, amount_msat)
    insert(
        LedgerEntry(
            wallet_id=payment.wallet_id,
            payment=payment,
            invoice=invoice,
            kind=kind,
            amount_msat=amount_msat,
        )
    )
    return balance


def _add_to_balance(wallet_id: int, amount_msat: int) -> int | None:
    """Add `amount_msat` to the wallet's cached balance, in one statement; a debit only
    if the balance covers it (else InsufficientBalance, nothing changed). Returns the new
    balance where the database returns it with the change (RETURNING), else None."""
    table = connection.ops.quote_name(Wallet._meta.db_table)
    sql = f"UPDATE {table} SET balance_msat = balance_msat + %s WHERE id = %s"
    params = [amount_msat, wallet_id]
    if amount_msat < 0:
        sql += " AND balance_msat >= %s"
        params.append(-amount_msat)
    returning = connection.features.can_return_columns_from_insert
    if returning:
        sql += " RETURNING balance_msat"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone() if returning else None
        changed = row is not None if returning else cursor.rowcount == 1
    if not changed:
        available = Wallet.objects.values_list("balance_msat", flat=True).get(pk=wallet_id)
        raise InsufficientBalance(available, -amount_msat)
    return row[0] if row else None


def ledger_balance_msat(wallet: Wallet) -> int:
    """The balance recomputed from the ledger (the cached total must always equal it)."""
    return wallet.entries.aggregate(total=Sum("amount_msat"))["total"] or 0


def transfer(
    source: Wallet, target: Wallet, amount_msat: int, *, memo: str = "", tag: str = ""
) -> tuple[Payment, Payment]:
    """Move `amount_msat` from one wallet of this gateway to another, at once and in full
    (no node, no fee): an outgoing and an incoming payment, both succeeded, in one
    transaction. Raises InsufficientBalance (nothing moved)."""
    now = timezone.now()
    reference = secrets.token_hex(32)  # both sides' "payment hash": no invoice exists
    with transaction.atomic():
        out = Payment.objects.create(
            wallet=source,
            direction=Payment.Direction.OUT,
            status=Payment.Status.SUCCESS,
            payment_hash=reference,
            amount_msat=amount_msat,
            memo=memo[:640],
            tag=tag,
            internal=True,
            settled_at=now,
        )
        _move(out, LedgerEntry.Kind.TRANSFER, -amount_msat)
        incoming = Payment.objects.create(
            wallet=target,
            direction=Payment.Direction.IN,
            status=Payment.Status.SUCCESS,
            payment_hash=reference,
            amount_msat=amount_msat,
            memo=memo[:640],
            tag=tag,
            internal=True,
            settled_at=now,
        )
        _move(incoming, LedgerEntry.Kind.TRANSFER, amount_msat)
    return out, incoming


# --- receiving ---------------------------------------------------------------------------


def follow_invoice(
    invoice: Invoice,
    merchant: Merchant | None,
    *,
    wallet: Wallet | None = None,
    memo: str | None = None,
    extra: dict | None = None,
    webhook: str = "",
) -> Payment | None:
    """Credit `merchant`'s wallet when `invoice` is paid. Call it where the invoice is
    recorded (the `then` of lightning.services.create_invoice), so every invoice a merchant
    sells is in its wallet from the start, pending until paid."""
    if wallet is None and merchant is None:
        return None  # the gateway's own (demo resources): nobody's balance
    return insert(
        Payment(
            wallet_id=wallet.pk if wallet is not None else wallet_id_for(merchant),
            direction=Payment.Direction.IN,
            payment_hash=invoice.payment_hash,
            bolt11=invoice.bolt11,
            amount_msat=invoice.amount_msat,
            memo=invoice.memo if memo is None else memo,
            extra=extra or {},
            webhook=webhook,
            tag="" if invoice.purpose == PURPOSE else invoice.purpose,
            invoice=invoice,
            expires_at=invoice.expires_at,
        )
    )


# The payment that follows an invoice, with its wallet: read for every payment received,
# on the way from the payment to its webhook, so prepared.
_payment_of_invoice = Prepared(
    lambda invoice_id: Payment.objects.filter(invoice_id=invoice_id).values_list(
        *columns(Payment), *columns(Wallet, "wallet__")
    )[:1],
    integers=True,
)
_PAID_FIELDS = ("status", "amount_msat", "preimage", "settled_at", "failure_reason")


def invoice_changed(invoice: Invoice, from_state: str, to_state: str) -> None:
    """The reaction to every invoice's state change (see receivers): inside its
    transaction, the wallet payment that follows it changes with it, once."""
    found = _payment_of_invoice.joined((Payment, Wallet), invoice.pk)
    if not found:
        return
    payment, payment.wallet = found[0]
    if to_state == Invoice.State.PAID:
        if payment.status == Payment.Status.SUCCESS:
            return
        amount = invoice.amount_paid_msat or invoice.amount_msat
        payment.status = Payment.Status.SUCCESS
        payment.amount_msat = amount
        payment.preimage = invoice.preimage
        payment.settled_at = invoice.paid_at or timezone.now()
        payment.failure_reason = ""
        # As written (no need to read the row back); conditional: credited once.
        if update(payment, _PAID_FIELDS, unless=("status", Payment.Status.SUCCESS)):
            balance = _move(payment, LedgerEntry.Kind.CREDIT, amount, invoice=invoice)
            events.announce(payment, "payment.completed")
            live.announce(payment, balance_msat=balance)
    elif to_state == "accepted":
        events.announce(payment, "payment.held")
    elif to_state in (Invoice.State.EXPIRED, Invoice.State.CANCELED):
        reason = (
            "expired unpaid"
            if to_state == Invoice.State.EXPIRED
            else CANCEL_REASONS.get(invoice.canceled_reason, "canceled")
        )
        if Payment.objects.filter(pk=payment.pk, status=Payment.Status.PENDING).update(
            status=Payment.Status.FAILED, failure_reason=reason
        ):
            payment.refresh_from_db()
            live.announce(payment)
            if to_state == Invoice.State.CANCELED:
                events.announce(payment, "payment.canceled")


def create_invoice(
    wallet: Wallet,
    amount_sats: int,
    *,
    memo: str = "",
    expiry_seconds: int = 3600,
    extra: dict | None = None,
    webhook: str = "",
    payment_hash: str | None = None,
    description_hash: str = "",
) -> Payment:
    """An invoice into the wallet; with `payment_hash`, a hold invoice (the caller alone
    knows the preimage, and settles or cancels it); with `description_hash`, one that
    carries that hash instead of the memo (the memo stays on the payment). Raises
    NodeError (DuplicateInvoice for a payment hash already used)."""

    def record(invoice):
        return follow_invoice(invoice, None, wallet=wallet, memo=memo, extra=extra, webhook=webhook)

    options = dict(purpose=PURPOSE, description_hash=description_hash, then=record)
    if payment_hash:
        if Invoice.objects.filter(payment_hash=payment_hash.lower()).exists():
            raise DuplicateInvoice("an invoice with this payment hash exists already")
        return lightning_services.create_hold_invoice(
            payment_hash.lower(), amount_sats * 1000, memo, expiry_seconds, **options
        )
    return lightning_services.create_invoice(amount_sats * 1000, memo, expiry_seconds, **options)


# --- paying ------------------------------------------------------------------------------


def fee_limit_msat(amount_msat: int) -> int:
    """What a payment may spend on routing fees, and so reserves: the larger of the
    absolute floor and the percentage of the amount (WALLETS_FEE_LIMIT_*)."""
    floor = settings.WALLETS_FEE_LIMIT_MIN_SATS * 1000
    share = math.ceil(amount_msat * Decimal(settings.WALLETS_FEE_LIMIT_PERCENT) / 100)
    return max(floor, share)


def _decode(bolt11: str):
    try:
        decoded = invoice_codec.decode_invoice(bolt11)
    except ValueError as exc:
        raise NotPayable("invalid_invoice", str(exc)) from exc
    amount_msat = int(decoded.amount_msat or 0)
    if not amount_msat:
        raise NotPayable(
            "amount_required", "The invoice has no amount; only invoices with an amount are paid."
        )
    expires = datetime.fromtimestamp(decoded.expiry_time, tz=UTC)  # date + expiry
    if expires <= timezone.now():
        raise NotPayable("invoice_expired", "The invoice has expired.")
    return decoded, amount_msat, expires


def pay(
    wallet: Wallet, bolt11: str, *, extra: dict | None = None, max_fee_msat: int | None = None
) -> Payment:
    """Pay `bolt11` from `wallet`. Returns the payment (succeeded, or still pending when
    the node cannot say yet); a payment that failed is returned failed, its reservation
    released. The same invoice paid again by the same wallet returns the first payment
    (unless that one failed). `max_fee_msat` lowers the fee limit (and so the reserve).
    Raises NotPayable, InsufficientBalance (nothing is sent)."""
    bolt11 = bolt11.strip().removeprefix("lightning:")
    decoded, amount_msat, expires = _decode(bolt11)
    earlier = _live_payment(wallet, decoded.payment_hash)
    if earlier is not None:
        return earlier  # paid (or being paid) already: a retry or a double click pays once
    ours = Invoice.objects.filter(payment_hash=decoded.payment_hash).first()
    internal = ours is not None
    if internal:
        payee = Payment.objects.filter(invoice=ours).values_list("wallet_id", flat=True).first()
        if payee == wallet.pk:
            raise NotPayable("own_invoice", "This invoice is this wallet's own: it cannot pay it.")
        if ours.hold:
            raise NotPayable(
                "internal_hold_invoice",
                "Hold invoices of this gateway cannot be paid from one of its wallets yet.",
            )
        if ours.state != Invoice.State.OPEN:
            raise NotPayable("invoice_not_open", f"The invoice is already {ours.state}.")
    fee_limit = 0 if internal else fee_limit_msat(amount_msat)
    if max_fee_msat is not None:
        fee_limit = max(0, min(fee_limit, max_fee_msat))
    claim = settings.WALLETS_PAY_TIMEOUT_SECONDS + settings.LND_TIMEOUT_SECONDS + 30
    try:
        with transaction.atomic():
            payment = Payment.objects.create(
                wallet=wallet,
                direction=Payment.Direction.OUT,
                payment_hash=decoded.payment_hash,
                bolt11=bolt11,
                amount_msat=amount_msat,
                fee_limit_msat=fee_limit,
                memo=(decoded.description or "")[:640],
                extra=extra or {},
                internal=internal,
                locked_until=timezone.now() + timedelta(seconds=claim),
                expires_at=expires,
            )
            _move(payment, LedgerEntry.Kind.RESERVE, -(amount_msat + fee_limit))
    except IntegrityError:  # the same invoice, paid by a concurrent request
        return _live_payment(wallet, decoded.payment_hash)
    if internal:
        return _pay_internally(payment, ours)
    return _send(payment)


def _live_payment(wallet: Wallet, payment_hash: str) -> Payment | None:
    return (
        Payment.objects.filter(
            wallet=wallet, payment_hash=payment_hash, direction=Payment.Direction.OUT
        )
        .exclude(status=Payment.Status.FAILED)
        .first()
    )


def _pay_internally(payment: Payment, invoice: Invoice) -> Payment:
    """Both sides in one transaction, without routing through the node (as LNbits does);
    the node is only told to cancel the invoice, so it cannot be paid from outside too."""
    try:
        preimage = lightning_services.take_off_node(invoice)
    except PaymentFailed as exc:
        return fail(payment.pk, str(exc))
    except NodeError as exc:
        return fail(payment.pk, f"the node did not answer: {exc}")
    return _complete_internally(payment, invoice, preimage)


def _complete_internally(payment: Payment, invoice: Invoice, preimage: str) -> Payment:
    with transaction.atomic():
        if lightning_services.settle_internally(invoice, preimage):
            return succeed(payment.pk, preimage, 0)
    return fail(payment.pk, "the invoice was paid or canceled meanwhile")


def _send(payment: Payment) -> Payment:
    try:
        result = lightning_services.pay_invoice(
            payment.bolt11, payment.fee_limit_msat, settings.WALLETS_PAY_TIMEOUT_SECONDS
        )
    except PaymentFailed as exc:
        return fail(payment.pk, str(exc))
    except (PaymentInFlight, NodeError) as exc:
        # Not a failure: the money may still go out. The sweep asks the node soon.
        log.warning("payment %s: outcome not known yet (%s)", payment.payment_hash, exc)
        Payment.objects.filter(pk=payment.pk, status=Payment.Status.PENDING).update(
            failure_reason=f"in flight: {exc}"[:500]
        )
        return Payment.objects.get(pk=payment.pk)
    return succeed(payment.pk, result.preimage, result.fee_msat)


def succeed(payment_id: int, preimage: str, fee_msat: int) -> Payment:
    """The node says it is paid: debit amount + fee (return the unused fee reserve), once."""
    with transaction.atomic():
        changed = Payment.objects.filter(pk=payment_id, status=Payment.Status.PENDING).update(
            status=Payment.Status.SUCCESS,
            preimage=preimage,
            fee_msat=fee_msat,
            settled_at=timezone.now(),
            locked_until=None,
            failure_reason="",
        )
        payment = Payment.objects.select_related("wallet").get(pk=payment_id)
        if changed:
            if fee_msat > payment.fee_limit_msat:
                log.error(
                    "payment %s: the node paid %s msat in fees, above its limit of %s",
                    payment.payment_hash,
                    fee_msat,
                    payment.fee_limit_msat,
                )
            _move(payment, LedgerEntry.Kind.SETTLE, payment.fee_limit_msat - fee_msat)
            events.announce(payment, "payment.sent")
            live.announce(payment)
            signals.outgoing_payment_ended.send(Payment, payment=payment)
    return payment


def fail(payment_id: int, reason: str) -> Payment:
    """The node says it failed (or never took it): release the reservation, once."""
    with transaction.atomic():
        changed = Payment.objects.filter(pk=payment_id, status=Payment.Status.PENDING).update(
            status=Payment.Status.FAILED,
            failure_reason=reason[:500],
            locked_until=None,
        )
        payment = Payment.objects.select_related("wallet").get(pk=payment_id)
        if changed:
            _move(
                payment,
                LedgerEntry.Kind.RELEASE,
                payment.amount_msat + payment.fee_limit_msat,
            )
            events.announce(payment, "payment.failed")
            live.announce(payment)
            signals.outgoing_payment_ended.send(Payment, payment=payment)
    return payment


def resolve_pending_payments(limit: int = 200) -> dict:
    """Outgoing payments still pending (the node could not say yet, or their sender
    crashed): ask the node how each ended, and settle or release it. Never sends anything,
    so it may ask while a sender still waits; only "the node never took it" waits for the
    sender's claim to run out (it may not have asked the node yet). Safe to run anywhere,
    any time: a conditional claim keeps two sweeps apart."""
    now = timezone.now()
    due = list(
        Payment.objects.filter(
            direction=Payment.Direction.OUT,
            status=Payment.Status.PENDING,
            created_at__lt=now - timedelta(seconds=settings.WALLETS_SWEEP_SECONDS),
        )
        .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lt=now))
        .order_by("id")[:limit]
    )
    counts = {"checked": 0, "succeeded": 0, "failed": 0, "in_flight": 0, "errors": 0}
    for payment in due:
        claimed = Payment.objects.filter(
            pk=payment.pk, status=Payment.Status.PENDING, next_check_at=payment.next_check_at
        ).update(next_check_at=now + timedelta(seconds=settings.WALLETS_SWEEP_CLAIM_SECONDS))
        if not claimed:
            continue
        counts["checked"] += 1
        try:
            outcome = _resolve(payment, sender_gone=payment.locked_until < now)
        except NodeError as exc:
            counts["errors"] += 1
            log.warning("payment %s: the node cannot tell yet (%s)", payment.payment_hash, exc)
            continue
        counts[outcome] += 1
    return counts


def _resolve(payment: Payment, sender_gone: bool) -> str:
    if payment.internal:
        # Crashed between taking the invoice off the node and settling it here.
        invoice = Invoice.objects.get(payment_hash=payment.payment_hash)
        node_invoice = lightning_services.lookup_on_node(invoice)
        if node_invoice.state == "CANCELED" and invoice.state == Invoice.State.OPEN:
            done = _complete_internally(payment, invoice, node_invoice.preimage)
            return "succeeded" if done.status == Payment.Status.SUCCESS else "failed"
        if node_invoice.state == "OPEN" and not sender_gone:
            return "in_flight"  # the sender may be about to take it off the node
        # The sender stopped before the node canceled it (or it was paid from outside
        # first): this payment did not happen; the invoice is payable again.
        Invoice.objects.filter(pk=invoice.pk, canceled_reason=Invoice.CancelReason.INTERNAL).update(
            canceled_reason=""
        )
        fail(payment.pk, f"the invoice is {node_invoice.state.lower()} on the node")
        return "failed"
    try:
        status = lightning_services.track_payment(payment.payment_hash)
    except PaymentNotFound:
        if not sender_gone:
            return "in_flight"  # its sender may not have handed it to the node yet
        fail(payment.pk, "the node never took this payment")
        return "failed"
    if status.state == "SUCCEEDED":
        succeed(payment.pk, status.preimage, status.fee_msat)
        return "succeeded"
    if status.state == "FAILED":
        fail(payment.pk, status.failure or "the payment failed")
        return "failed"
    return "in_flight"


# --- hold invoices -----------------------------------------------------------------------


class HoldError(Exception):
    def __init__(self, error: str, message: str, status: int = 400):
        self.error = error
        self.status = status
        super().__init__(message)


def settle_hold(payment: Payment, preimage: str) -> Payment:
    """Take the held payment: the node settles it, and it is recorded paid at once."""
    invoice = _hold_invoice(payment)
    try:
        matches = hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == invoice.payment_hash
    except ValueError:
        matches = False
    if not matches:
        raise HoldError("invalid_preimage", "The preimage does not match the payment hash.")
    if invoice.state != "accepted":
        raise HoldError(
            "not_held",
            f"The hold invoice is {invoice.state}: only an accepted (held) payment can be settled.",
            409,
        )
    try:
        lightning_services.settle_hold_invoice(invoice, preimage)
    except PaymentFailed as exc:
        raise HoldError("not_held", str(exc), 409) from exc
    lightning_services.refresh_from_node(invoice)
    return Payment.objects.get(pk=payment.pk)


def cancel_hold(payment: Payment) -> Payment:
    """Refuse the payment: the payer gets the money back, and the invoice is canceled."""
    invoice = _hold_invoice(payment)
    if invoice.state not in (Invoice.State.OPEN, "accepted"):
        raise HoldError("not_cancelable", f"The hold invoice is already {invoice.state}.", 409)
    try:
        lightning_services.cancel_hold_invoice(invoice)
    except PaymentFailed as exc:
        raise HoldError("not_cancelable", str(exc), 409) from exc
    return Payment.objects.get(pk=payment.pk)


def _hold_invoice(payment: Payment) -> Invoice:
    if payment.direction != Payment.Direction.IN or payment.invoice is None:
        raise HoldError("not_a_hold_invoice", "Only hold invoices are settled or canceled.")
    invoice = payment.invoice
    if not invoice.hold:
        raise HoldError(
            "not_a_hold_invoice", "This is a regular invoice: it settles when it is paid."
        )
    return invoice
