"""The rules of refunds.

A refund is a row with its state, written in the transaction that checks what is left to
refund of the payment (locked, so concurrent refunds cannot together exceed it). It is paid
out as an outgoing payment of the merchant's wallet (wallets.services.pay: committed with
its reserve before the node is asked, resolved by the node after a crash), and follows that
payment through `wallets.signals.outgoing_payment_ended`, in the payment's own transaction.

- With a refund address (LUD-16 / LNURL-pay), the gateway fetches an invoice from it and
  pays it: pending -> paying -> completed | failed.
- Otherwise the buyer claims a link (LNURL-withdraw or a pasted BOLT11 of the exact amount):
  claimable -> paying -> completed; the claim is single use (a conditional update), the link
  expires (-> expired) and the merchant may reissue it. A payout that fails to the buyer's
  invoice makes the link claimable again (the buyer may try another wallet).

Only one sender pays a refund: a lease (`next_attempt_at`) taken with a conditional update,
and the wallet's one-live-payment-per-hash constraint behind it. A refund whose sender died
before the wallet recorded the payment is paid again by the sweep (nothing was sent: the
payment row commits before the node is asked); one whose payment exists follows it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from checkout import rates
from checkout.models import CheckoutInvoice, Merchant
from config.problems import Problem
from lightning import invoice_codec
from wallets import services as wallets
from wallets.models import Payment, Wallet

from . import emails, events, lnurl, signals
from .models import HOLDING, Refund, claim_token

log = logging.getLogger(__name__)

State = Refund.State


# --- what can be refunded -----------------------------------------------------------------


def refunded_msat(payment: Payment) -> int:
    """What the refunds of `payment` hold (pending, claimable, paying or completed)."""
    held = payment.refunds.filter(state__in=HOLDING, purpose=Refund.Purpose.REFUND).aggregate(
        total=Sum("amount_msat")
    )
    return held["total"] or 0


def check_received(merchant: Merchant, payment: Payment | None, what: str) -> Payment:
    if payment is None or payment.wallet.merchant_id != merchant.pk:
        raise Problem(404, "not_found", f"No {what}.")
    if payment.direction != Payment.Direction.IN or payment.status != Payment.Status.SUCCESS:
        raise Problem(409, "not_paid", f"Only a paid payment can be refunded; {what} is not paid.")
    return payment


def payment_of_checkout(merchant: Merchant, checkout: CheckoutInvoice) -> Payment:
    payment = (
        Payment.objects.select_related("wallet").filter(invoice_id=checkout.invoice_id).first()
    )
    return check_received(merchant, payment, f"checkout invoice {checkout.public_id}")


def payment_by_hash(merchant: Merchant, payment_hash: str) -> Payment:
    payment = (
        Payment.objects.select_related("wallet")
        .filter(
            wallet__merchant=merchant,
            payment_hash=payment_hash.lower(),
            direction=Payment.Direction.IN,
        )
        .first()
    )
    return check_received(merchant, payment, f"payment with hash {payment_hash}")


def payment_of_shopify_order(merchant: Merchant, order_id: str) -> Payment:
    from shopify_bridge.models import ShopifyOrder

    order = ShopifyOrder.objects.filter(public_id=order_id, store__merchant=merchant).first()
    payment = None
    if order is not None:
        payment = (
            Payment.objects.select_related("wallet").filter(invoice_id=order.invoice_id).first()
        )
    return check_received(merchant, payment, f"Shopify order {order_id}")


def describe_source(payment: Payment) -> tuple[str, str, Decimal | None, str, str]:
    """(source, source id, rate at payment time, its currency, the buyer's email) of what a
    payment paid for."""
    invoice = payment.invoice
    purpose = invoice.purpose if invoice is not None else ""
    if purpose == "checkout":
        checkout = CheckoutInvoice.objects.filter(invoice=invoice).first()
        if checkout is not None:
            return (
                Refund.Source.CHECKOUT,
                checkout.public_id,
                checkout.rate,
                checkout.currency,
                checkout.email,
            )
    elif purpose == "shopify":
        from shopify_bridge.models import ShopifyOrder

        order = ShopifyOrder.objects.filter(invoice=invoice).first()
        if order is not None:
            return (Refund.Source.SHOPIFY, order.public_id, order.rate, "USD", order.email)
    elif purpose == "order":
        from orders.models import Order

        order = Order.objects.filter(invoice=invoice).first()
        if order is not None:
            return (Refund.Source.ORDER, order.public_id, None, "SAT", order.email)
    elif purpose == "l402":
        return (Refund.Source.L402, invoice.payment_hash, None, "SAT", "")
    return (Refund.Source.WALLET, payment.payment_hash, None, "SAT", "")


# --- making a refund ----------------------------------------------------------------------


def _amount_msat(
    payment: Payment,
    amount_sats: int | None,
    amount: Decimal | None,
    currency: str | None,
    rate_choice: str,
    payment_rate: Decimal | None,
    payment_currency: str,
) -> tuple[int | None, dict]:
    """The msat to refund (None: all that is left), and how it was converted."""
    if amount_sats is not None:
        return amount_sats * 1000, {}
    if amount is None:
        return None, {}
    if currency == "SAT":
        return int(amount) * 1000, {}
    if rate_choice == Refund.RateChoice.PAYMENT:
        if payment_rate is None or payment_currency != currency:
            raise Problem(
                422,
                "no_payment_rate",
                f"This payment was not made in {currency}, so there is no {currency} rate "
                'from payment time: give rate "current" (today\'s rate) or amountSats.',
                {"rate": [f"No {currency} rate at payment time."]},
            )
        rate, source = payment_rate, "payment"
    else:
        try:
            rate, source = rates.get_rate(currency)
        except rates.RateUnavailable as exc:
            raise Problem(503, "rate_unavailable", f"No {currency} rate right now: {exc}") from None
    sats = rates.fiat_to_sats(amount, rate)
    return sats * 1000, {
        "fiat_amount": amount,
        "currency": currency,
        "rate": rate,
        "rate_choice": rate_choice,
        "rate_source": source,
    }


def create_refund(
    merchant: Merchant,
    payment: Payment,
    *,
    amount_sats: int | None = None,
    amount: Decimal | None = None,
    currency: str | None = None,
    rate_choice: str = Refund.RateChoice.PAYMENT,
    reason: str = "",
    refund_address: str = "",
    email: str | None = None,
) -> Refund:
    """Refund (part of) a paid incoming payment. Raises Problem (409 when it would exceed
    what is left to refund, or the wallet cannot cover it)."""
    source, source_id, payment_rate, payment_currency, buyer_email = describe_source(payment)
    if source == Refund.Source.CHECKOUT and not refund_address:
        refund_address = (
            CheckoutInvoice.objects.filter(public_id=source_id)
            .values_list("refund_address", flat=True)
            .first()
            or ""
        )
    if refund_address:  # a malformed address is refused now, not at payout
        lnurl.check_address(refund_address)
    wanted, conversion = _amount_msat(
        payment, amount_sats, amount, currency, rate_choice, payment_rate, payment_currency
    )
    with transaction.atomic():
        # The lock that serializes the refunds of one payment.
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        left = locked.amount_msat - refunded_msat(locked)
        if left <= 0:
            raise Problem(409, "fully_refunded", "This payment has been refunded in full.")
        amount_msat = left if wanted is None else wanted
        if amount_msat > left:
            raise Problem(
                409,
                "exceeds_refundable",
                f"{_sats(amount_msat)} exceeds what is left to refund of this payment: "
                f"{_sats(left)} of {_sats(locked.amount_msat)}.",
                extra={"refundableMsat": left},
            )
        # Routing fees come on top, from what the wallet holds beyond the amount (see _pay).
        _check_covered(locked.wallet_id, amount_msat)
        refund = Refund(
            merchant=merchant,
            payment=locked,
            source=source,
            source_id=source_id,
            amount_msat=amount_msat,
            reason=reason,
            refund_address=refund_address,
            email=buyer_email if email is None else email,
            **conversion,
        )
        if refund_address:
            refund.state = State.PENDING
        else:
            _open_link(refund)
        refund.save()
        events.announce(refund, "refund.created")
        if refund.link_email_due_at:
            emails.send_soon(refund.pk)
    return refund


def create_voucher(merchant: Merchant, payment: Payment, amount_msat: int, note: str) -> Refund:
    """Sats an order delivers (inside its transaction): a link the buyer claims with
    LNURL-withdraw, paid from the merchant's wallet like a refund link, never expiring
    before REFUNDS_LINK_SECONDS. Raises Problem 409 when the wallet cannot cover it."""
    _check_covered(payment.wallet_id, amount_msat)
    source, source_id, *_ = describe_source(payment)
    refund = Refund(
        merchant=merchant,
        payment=payment,
        purpose=Refund.Purpose.DELIVERY,
        source=source,
        source_id=source_id,
        amount_msat=amount_msat,
        reason=note,
    )
    _open_link(refund)
    refund.link_email_due_at = None  # the order's receipt carries it
    refund.save()
    return refund


def _check_covered(wallet_id: int, amount_msat: int) -> None:
    """A payout the wallet cannot cover is refused before anything is made."""
    balance = Wallet.objects.values_list("balance_msat", flat=True).get(pk=wallet_id)
    if balance < amount_msat:
        raise Problem(
            409,
            "insufficient_balance",
            f"Your wallet holds {_sats(balance)}; this needs {_sats(amount_msat)}.",
        )


def _sats(msat: int) -> str:
    return f"{msat // 1000:,} sats" if msat % 1000 == 0 else f"{msat / 1000:,.3f} sats"


def _open_link(refund: Refund) -> None:
    refund.state = State.CLAIMABLE
    refund.claim_token = claim_token()
    refund.claim_expires_at = timezone.now() + timedelta(seconds=settings.REFUNDS_LINK_SECONDS)
    refund.failure_reason = ""
    if refund.email:
        refund.link_email_due_at = timezone.now()
        refund.link_emailed_at = None


def reissue(refund: Refund) -> Refund:
    """A new link (the old one stops working) with a new expiry, for a refund that is
    claimable, expired, or failed while waiting to be claimed."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        if refund.state not in (State.CLAIMABLE, State.EXPIRED) or refund.refund_address:
            raise Problem(
                409,
                "not_reissuable",
                f"Refund {refund.public_id} is {refund.state}"
                + (" and paid to its refund address" if refund.refund_address else "")
                + ": only an unclaimed refund link can be reissued.",
            )
        if refund.state == State.EXPIRED:  # its amount was free again: take it back
            left = payment.amount_msat - refunded_msat(payment)
            if refund.amount_msat > left:
                raise Problem(
                    409,
                    "exceeds_refundable",
                    f"Since this link expired, other refunds took the amount: {_sats(left)} "
                    "is left to refund.",
                )
        _open_link(refund)
        refund.save()
        if refund.link_email_due_at:
            emails.send_soon(refund.pk)
    return refund


def cancel(refund: Refund) -> Refund:
    """The merchant withdraws a refund nobody has claimed or started paying."""
    reason = "canceled by the merchant"
    with transaction.atomic():
        done = Refund.objects.filter(
            pk=refund.pk, state__in=(State.PENDING, State.CLAIMABLE, State.EXPIRED)
        ).update(state=State.FAILED, failure_reason=reason, next_attempt_at=None)
        refund = Refund.objects.select_related("merchant").get(pk=refund.pk)
        if not done:
            raise Problem(
                409,
                "not_cancelable",
                f"Refund {refund.public_id} is {refund.state}: only one not yet being paid "
                "can be canceled.",
            )
        events.announce(refund, "refund.failed")
    return refund


# --- the buyer's claim ----------------------------------------------------------------------


class ClaimError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def claimable(token: str) -> Refund:
    """The refund of a link, if it can be claimed now; else ClaimError."""
    refund = Refund.objects.select_related("merchant").filter(claim_token=token).first()
    if refund is None:
        raise ClaimError(404, "This refund link does not exist (or was replaced by a new one).")
    expire_if_due(refund)  # past its time is expired, whether or not the sweep ran
    if refund.state == State.CLAIMABLE:
        return refund
    messages = {
        State.EXPIRED: "This refund link has expired: ask the shop for a new one.",
        State.PAYING: "This refund is being paid.",
        State.COMPLETED: "This refund has been paid.",
        State.FAILED: f"This refund was withdrawn: {refund.failure_reason or 'failed'}.",
    }
    raise ClaimError(410 if refund.state == State.EXPIRED else 409, messages[refund.state])


def claim(token: str, bolt11: str) -> Refund:
    """The buyer hands in an invoice of exactly the refund's amount: the link is used up
    (once, whoever races), and the payout starts after commit."""
    refund = claimable(token)
    bolt11 = bolt11.strip()
    if bolt11.lower().startswith("lightning:"):
        bolt11 = bolt11[len("lightning:") :]
    try:
        decoded = invoice_codec.decode_invoice(bolt11)
    except ValueError as exc:
        raise ClaimError(400, f"That is not a Lightning invoice: {exc}") from None
    amount = int(decoded.amount_msat or 0)
    if amount != refund.amount_msat:
        raise ClaimError(
            400,
            f"The invoice must be for exactly {_sats(refund.amount_msat)} "
            f"({refund.amount_msat} msat); it is for "
            + (f"{amount} msat." if amount else "no amount."),
        )
    if decoded.expiry_time <= timezone.now().timestamp():
        raise ClaimError(400, "That invoice has expired: make a new one.")
    with transaction.atomic():
        taken = Refund.objects.filter(
            pk=refund.pk,
            state=State.CLAIMABLE,
            claim_token=token,
            claim_expires_at__gt=timezone.now(),
        ).update(
            state=State.PAYING,
            bolt11=bolt11,
            payment_hash=decoded.payment_hash,
            next_attempt_at=None,
            failure_reason="",
        )
        if not taken:
            raise ClaimError(409, "This refund link has just been used.")
        start_payout(refund.pk)
    refund.refresh_from_db()
    return refund


def start_payout(refund_id: int) -> None:
    """After commit, take the refund on in the worker: fetch from its address, or pay its
    claim (the sweep does it if the task is lost)."""
    from . import tasks

    transaction.on_commit(lambda: tasks.pay_out.delay(refund_id), robust=True)


# --- paying out -----------------------------------------------------------------------------


def pay_out(refund_id: int) -> Refund:
    """Take the refund one step on: fetch its invoice from the refund address, then pay it.
    Safe to call any number of times, from anywhere, concurrently."""
    refund = Refund.objects.get(pk=refund_id)
    if refund.state == State.PENDING:
        _fetch_address_invoice(refund)
        refund.refresh_from_db()
    if refund.state == State.PAYING:
        _pay(refund)
        refund.refresh_from_db()
    return refund


def _lease(refund: Refund, state: str, seconds: float) -> bool:
    now = timezone.now()
    return bool(
        Refund.objects.filter(pk=refund.pk, state=state)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(next_attempt_at=now + timedelta(seconds=seconds))
    )


def _fetch_address_invoice(refund: Refund) -> None:
    if not _lease(refund, State.PENDING, settings.REFUNDS_FETCH_TIMEOUT_SECONDS * 2 + 30):
        return
    comment = f"Refund {refund.public_id} from {refund.merchant.name}"
    try:
        bolt11 = lnurl.invoice_for(refund.refund_address, refund.amount_msat, comment)
    except lnurl.AddressError as exc:
        attempts = refund.attempts + 1
        if exc.permanent or attempts >= settings.REFUNDS_ADDRESS_ATTEMPTS:
            Refund.objects.filter(pk=refund.pk).update(attempts=attempts)
            _fail(refund, f"the refund address could not be paid: {exc}", State.PENDING)
            return
        delay = min(settings.REFUNDS_RETRY_SECONDS * 2 ** (attempts - 1), 3600)
        Refund.objects.filter(pk=refund.pk, state=State.PENDING).update(
            attempts=attempts,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            failure_reason=f"will try again: {exc}"[:500],
        )
        log.warning("refund %s: address not paid yet (%s)", refund.public_id, exc)
        return
    Refund.objects.filter(pk=refund.pk, state=State.PENDING).update(
        state=State.PAYING,
        bolt11=bolt11,
        payment_hash=invoice_codec.payment_hash_of(bolt11),
        attempts=refund.attempts + 1,
        next_attempt_at=None,
        failure_reason="",
    )


def _pay(refund: Refund) -> None:
    claim = settings.WALLETS_PAY_TIMEOUT_SECONDS + settings.LND_TIMEOUT_SECONDS + 30
    if not _lease(refund, State.PAYING, claim):
        return
    wallet = Wallet.objects.get(payments__pk=refund.payment_id)  # the one that was paid
    existing = (
        Payment.objects.filter(
            wallet=wallet, payment_hash=refund.payment_hash, direction=Payment.Direction.OUT
        )
        .order_by("-id")
        .first()
    )
    if existing is not None:
        # Sent before (the sender died after the wallet recorded it): follow it, never pay
        # again. A pending one ends through the wallet's sweep and the signal.
        if existing.status != Payment.Status.PENDING:
            with transaction.atomic():
                payment_ended(existing)
        return
    # The fee budget is the wallet's usual one, or what it holds beyond the amount if that
    # is less (a refund of the whole of a merchant's only sale then pays no routing fee: a
    # payout inside this gateway or over a direct channel still goes through).
    spare = wallet.balance_msat - refund.amount_msat
    try:
        payment = wallets.pay(
            wallet, refund.bolt11, extra={"refund": refund.public_id}, max_fee_msat=spare
        )
    except (wallets.NotPayable, wallets.InsufficientBalance) as exc:
        with transaction.atomic():
            _payout_failed(refund, str(exc))
        return
    Refund.objects.filter(pk=refund.pk, payout__isnull=True).update(payout=payment)


def payment_ended(payment: Payment) -> None:
    """An outgoing payment ended (inside its transaction): the refund it pays follows it."""
    for refund in Refund.objects.select_related("merchant").filter(
        payment_hash=payment.payment_hash,
        merchant_id=payment.wallet.merchant_id,
        state=State.PAYING,
    ):
        if payment.status == Payment.Status.SUCCESS:
            now = timezone.now()
            done = Refund.objects.filter(pk=refund.pk, state=State.PAYING).update(
                state=State.COMPLETED,
                payout=payment,
                completed_at=now,
                next_attempt_at=None,
                receipt_due_at=now if refund.email else None,
            )
            if done:
                refund.refresh_from_db()
                events.announce(refund, "refund.completed")
                signals.refund_completed.send(Refund, refund=refund)
                if refund.email:
                    emails.send_soon(refund.pk)
        else:
            _payout_failed(refund, payment.failure_reason or "the payment failed", payment)


def _payout_failed(refund: Refund, reason: str, payment: Payment | None = None) -> None:
    """A payout that did not go out. A link the buyer claimed opens again (they may try
    another invoice) while it has time left; anything else fails."""
    if refund.claim_token and refund.claim_expires_at > timezone.now():
        Refund.objects.filter(pk=refund.pk, state=State.PAYING).update(
            state=State.CLAIMABLE,
            bolt11="",
            payment_hash="",
            payout=None,
            next_attempt_at=None,
            failure_reason=f"the last claim was not paid: {reason}"[:500],
        )
        return
    _fail(refund, f"the payout failed: {reason}", State.PAYING, payment)


def _fail(refund: Refund, reason: str, from_state: str, payment: Payment | None = None) -> None:
    with transaction.atomic():
        done = Refund.objects.filter(pk=refund.pk, state=from_state).update(
            state=State.FAILED,
            failure_reason=reason[:500],
            next_attempt_at=None,
            **({"payout": payment} if payment is not None else {}),
        )
        if done:
            refund.refresh_from_db()
            events.announce(refund, "refund.failed")


# --- the sweep ------------------------------------------------------------------------------


def expire_if_due(refund: Refund) -> None:
    """This refund's link, if it is past its time unclaimed, is expired (in `refund` too)."""
    if refund.state != State.CLAIMABLE or refund.claim_expires_at > timezone.now():
        return
    if Refund.objects.filter(pk=refund.pk, state=State.CLAIMABLE).update(
        state=State.EXPIRED, next_attempt_at=None
    ):
        refund.state = State.EXPIRED
    else:
        refund.refresh_from_db()


def expire_links() -> int:
    """Links past their time, unclaimed: expired (their amount may be refunded again)."""
    due = Refund.objects.filter(state=State.CLAIMABLE, claim_expires_at__lte=timezone.now())
    # A read first: on SQLite an UPDATE takes the one write lock even when it changes nothing.
    return due.update(state=State.EXPIRED, next_attempt_at=None) if due.exists() else 0


def sweep(limit: int = 100) -> dict:
    """Every few seconds (beat): expire links, retry refund addresses that are due, pay
    refunds whose sender stopped, and send due emails."""
    counts = {"expired": expire_links(), "advanced": 0}
    now = timezone.now()
    due = Refund.objects.filter(state__in=(State.PENDING, State.PAYING)).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    # A refund just made or claimed has its own task: leave it a moment.
    due = due.filter(created_at__lt=now - timedelta(seconds=settings.REFUNDS_SWEEP_SECONDS))
    for refund_id in due.order_by("id").values_list("pk", flat=True)[:limit]:
        try:
            pay_out(refund_id)
            counts["advanced"] += 1
        except Exception:
            log.exception("refund %s: payout step failed", refund_id)
    counts["emails"] = emails.send_due()
    return counts
