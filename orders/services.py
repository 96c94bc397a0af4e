"""The rules of orders (the Bitrefill seed's lifecycle).

unpaid -> paid -> success | failed -> refunded, or unpaid -> expired; a purchase from the
customer's balance starts at payment_pending (the transfer runs in the worker). Every change
is a conditional UPDATE (or a row lock), so a duplicate task, a second worker or a replayed
payment never delivers, pays or refunds twice.

- Paid by Lightning: the order's invoice is one of the merchant's (its wallet follows it).
  The invoice's reaction marks the order paid; delivery runs after commit (a task; the sweep
  does any that a crash left).
- Paid from balance: one transfer from the customer's wallet to the merchant's
  (wallets.transfer), in the transaction that marks the order paid.
- Delivery: a code from the operator's stock, a link, or nothing. Out of stock after payment:
  failed, and refunded in the same transaction: back to the balance it came from, or as a
  refund (refunds app) to the order's refund_address, else by a refund link emailed to the
  buyer; the order turns refunded when that refund is paid.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from checkout import rates
from checkout.models import Merchant
from config.problems import Problem
from lightning import services as lightning_services
from lightning.backends.base import NodeError
from wallets import services as wallets
from wallets.models import Payment, Wallet

from . import events
from .models import Customer, Operator, Order, StockCode

log = logging.getLogger(__name__)

PURPOSE = "order"
Status = Order.Status


# --- customers -----------------------------------------------------------------------------


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_customer(merchant: Merchant, name: str) -> tuple[Customer, str]:
    """A reseller of `merchant`, with its API key and secret (the secret is shown once)."""
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        wallet = Wallet.objects.create(
            merchant=merchant, owner=Wallet.Owner.CUSTOMER, name=f"{name} (customer)"
        )
        customer = Customer.objects.create(
            merchant=merchant,
            name=name,
            api_key=secrets.token_hex(16),
            secret_hash=hash_secret(secret),
            wallet=wallet,
        )
    return customer, secret


def authenticate(api_key: str, secret: str) -> Customer | None:
    customer = (
        Customer.objects.select_related("merchant", "wallet")
        .filter(api_key=api_key, revoked_at__isnull=True)
        .first()
    )
    # Compared in constant time, and a hash is computed for an unknown key too.
    expected = customer.secret_hash if customer else hash_secret(secrets.token_hex(16))
    if not hmac.compare_digest(expected, hash_secret(secret)) or customer is None:
        return None
    return customer


def top_up(customer: Customer, amount_sats: int) -> Payment:
    """An invoice into the customer's balance (credited when it is paid)."""
    if not 1 <= amount_sats <= settings.CHECKOUT_MAX_INVOICE_SATS:
        raise Problem(
            400,
            "validation_error",
            f"amount must be 1 to {settings.CHECKOUT_MAX_INVOICE_SATS} sats.",
            {"amount": ["Out of range."]},
        )
    try:
        return wallets.create_invoice(
            customer.wallet, amount_sats, memo=f"Top-up of {customer.name} at {customer.merchant}"
        )
    except NodeError as exc:
        raise Problem(
            503, "node_unavailable", f"The Lightning node did not answer: {exc}"
        ) from None


# --- inventory and prices ------------------------------------------------------------------

# The seed's products, for the demo merchant (`make run`), so its curl examples work.
DEMO_OPERATORS = [
    dict(
        slug="lightning-recharge",
        name="Thor Recharge",
        ranged=True,
        range_min=500,
        range_max=4294967,
        price_rate=Decimal("1.02"),
        purchase_fee_sats=300,
        delivery=Operator.Delivery.LNURL_WITHDRAW,
        instructions="Withdraw your sats with any Lightning wallet (LNURL-withdraw).",
    ),
    dict(
        slug="lightning-channel",
        name="Thor Lightning Channel Capacity",
        ranged=True,
        range_min=500000,
        range_max=16777215,
        price_rate=Decimal("0.015186"),
        purchase_fee_sats=10023,
    ),
    dict(
        slug="turbo-lightning-channel",
        name="Thor Turbo Lightning Channel",
        ranged=True,
        range_min=500000,
        range_max=8388607,
        price_rate=Decimal("1.047073"),
        purchase_fee_sats=10016,
    ),
]


def seed_operators(merchant: Merchant) -> None:
    for fields in DEMO_OPERATORS:
        Operator.objects.get_or_create(
            merchant=merchant, slug=fields["slug"], defaults={**fields, "currency": "SAT"}
        )


def operator_of(merchant: Merchant, slug: str) -> Operator:
    operator = Operator.objects.filter(merchant=merchant, slug=slug, active=True).first()
    if operator is None:
        raise Problem(404, "not_found", f"No product {slug!r} is for sale.")
    return operator


def _value(operator: Operator, value_package: str) -> Decimal:
    try:
        value = Decimal(value_package)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value <= 0:
        raise _bad_value(f"valuePackage must be a positive number, not {value_package!r}.")
    if operator.ranged:
        low, high, step = operator.range_min, operator.range_max, operator.range_step or 1
        if value != int(value) or not low <= value <= high or (int(value) - low) % step:
            raise _bad_value(
                f"valuePackage must be a whole number from {low} to {high} in steps of {step}."
            )
    elif str(value_package) not in [str(p) for p in operator.packages]:
        raise _bad_value(
            f"valuePackage must be one of {', '.join(map(str, operator.packages)) or 'none'}."
        )
    return value


def _bad_value(message: str) -> Problem:
    return Problem(400, "invalid_value_package", message, {"valuePackage": [message]})


def price_sats(operator: Operator, value: Decimal) -> int:
    """What `value` of the operator costs, in whole sats (rounded up)."""
    amount = value * operator.price_rate
    if operator.currency == Operator.Currency.SAT:
        sats = math.ceil(amount)
    else:
        try:
            sats = rates.sats_for(amount.quantize(Decimal("0.01")), operator.currency).sats
        except rates.RateUnavailable as exc:
            raise Problem(503, "rate_unavailable", f"No exchange rate right now: {exc}") from None
    return sats + operator.purchase_fee_sats


def _check_stock(operator: Operator) -> None:
    if (
        operator.delivery == Operator.Delivery.CODE
        and not operator.codes.filter(order__isnull=True).exists()
    ):
        raise Problem(409, "out_of_stock", f"{operator.name} is out of stock.")


# --- ordering ------------------------------------------------------------------------------


def create_order(customer: Customer, terms: dict, method: str) -> Order:
    """An order of `terms` (validated by the view), paid by Lightning (an invoice) or from
    the customer's balance (paid in the worker)."""
    operator = operator_of(customer.merchant, terms["operator_slug"])
    value = _value(operator, terms["value_package"])
    _check_stock(operator)
    price = price_sats(operator, value)
    if price > settings.CHECKOUT_MAX_INVOICE_SATS:
        raise Problem(400, "amount_too_large", f"{price} sats is more than the largest order.")
    fields = dict(
        merchant=customer.merchant,
        customer=customer,
        operator=operator,
        value_package=terms["value_package"],
        email=terms.get("email", ""),
        send_email=terms.get("send_email", True),
        user_ref=terms.get("user_ref", ""),
        webhook_url=terms.get("webhook_url", ""),
        refund_address=terms.get("refund_address", ""),
        price_sats=price,
    )
    if method == Order.PaymentMethod.BALANCE:
        with transaction.atomic():
            order = Order.objects.create(
                **fields, payment_method=method, status=Status.PAYMENT_PENDING
            )
            _process_soon(order.pk)
        return order

    def record(invoice):
        wallets.follow_invoice(invoice, customer.merchant)
        return Order.objects.create(
            **fields, payment_method=method, status=Status.UNPAID, invoice=invoice
        )

    memo = f"{operator.name} {terms['value_package']} {operator.currency}"
    try:
        return lightning_services.create_invoice(
            price * 1000,
            memo,
            settings.ORDERS_INVOICE_SECONDS,
            purpose=PURPOSE,
            then=record,
        )
    except NodeError as exc:
        raise Problem(
            503, "node_unavailable", f"The Lightning node did not answer: {exc}"
        ) from None


def order_of(customer: Customer, order_id: str) -> Order:
    order = (
        Order.objects.select_related("operator", "invoice", "merchant")
        .filter(customer=customer, public_id=order_id)
        .first()
    )
    if order is None:
        raise Problem(404, "not_found", f"No order {order_id}.")
    return order


def _process_soon(order_id: int) -> None:
    from . import tasks

    transaction.on_commit(lambda: tasks.process.delay(order_id), robust=True)


# --- payment -------------------------------------------------------------------------------


def invoice_changed(invoice, to_state: str) -> None:
    """The reaction to the order's invoice (inside the payment's transaction)."""
    if to_state == "paid":
        payment_id = Payment.objects.filter(invoice=invoice).values_list("pk", flat=True).first()
        orders = Order.objects.filter(invoice=invoice, status__in=(Status.UNPAID, Status.EXPIRED))
        for order_id in orders.values_list("pk", flat=True):
            if Order.objects.filter(pk=order_id, status__in=(Status.UNPAID, Status.EXPIRED)).update(
                status=Status.PAID, paid_at=timezone.now(), payment_id=payment_id
            ):
                _process_soon(order_id)
    elif to_state in ("expired", "canceled"):
        Order.objects.filter(invoice=invoice, status=Status.UNPAID).update(status=Status.EXPIRED)


def process(order_id: int) -> Order:
    """Take the order on: pay a purchase from balance, then deliver. Idempotent."""
    order = Order.objects.get(pk=order_id)
    if order.status == Status.PAYMENT_PENDING:
        _pay_from_balance(order)
    deliver(order_id)
    return Order.objects.get(pk=order_id)


def _pay_from_balance(order: Order) -> None:
    with transaction.atomic():
        locked = Order.objects.select_for_update(of=("self",)).filter(
            pk=order.pk, status=Status.PAYMENT_PENDING
        )
        order = locked.select_related("customer__wallet", "merchant").first()
        if order is None:
            return
        try:
            _, credit = wallets.transfer(
                order.customer.wallet,
                wallets.wallet_for(order.merchant),
                order.price_sats * 1000,
                memo=f"Order {order.public_id}",
                tag=PURPOSE,
            )
        except wallets.InsufficientBalance as exc:
            order.status = Status.FAILED
            order.failure_reason = (
                f"Insufficient balance: your account holds {exc.available_msat // 1000:,} "
                f"sats; this order costs {order.price_sats:,} sats (top it up with "
                "POST /v1/account_balance/topup)."
            )
            order.save(update_fields=["status", "failure_reason"])
            events.announce(order)
            return
        order.status, order.payment, order.paid_at = Status.PAID, credit, timezone.now()
        order.save(update_fields=["status", "payment", "paid_at"])


def deliver(order_id: int) -> None:
    """Deliver a paid order, once: success, or failed and refunded."""
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",))
            .filter(pk=order_id, status=Status.PAID)
            .select_related("operator", "merchant", "customer__wallet", "payment")
            .first()
        )
        if order is None:
            return
        operator = order.operator
        if operator.delivery == Operator.Delivery.CODE:
            code = (
                StockCode.objects.select_for_update(skip_locked=True)
                .filter(operator=operator, order__isnull=True)
                .order_by("id")
                .first()
            )
            if code is None:
                _fail_and_refund(order, "out of stock after payment")
                return
            StockCode.objects.filter(pk=code.pk, order__isnull=True).update(order=order)
            order.delivery = {"type": "code", "code": code.code}
        elif operator.delivery == Operator.Delivery.LINK:
            order.delivery = {"type": "link", "link": operator.delivery_link}
        elif operator.delivery == Operator.Delivery.LNURL_WITHDRAW:
            from refunds import services as refunds
            from refunds.serializers import claim_url, withdraw_lnurl

            try:
                voucher = refunds.create_voucher(
                    order.merchant,
                    order.payment,
                    int(Decimal(order.value_package)) * 1000,
                    f"{operator.name} {order.value_package} sats (order {order.public_id})",
                )
            except Problem as exc:
                _fail_and_refund(order, f"could not be delivered: {exc.detail}")
                return
            order.delivery = {
                "type": "lnurl_withdraw",
                "link": claim_url(voucher),
                "k1": voucher.claim_token,
                "lnurl": "lightning:" + withdraw_lnurl(voucher),
            }
        if operator.instructions:
            order.delivery["other"] = operator.instructions
        order.status, order.completed_at = Status.SUCCESS, timezone.now()
        order.save(update_fields=["status", "completed_at", "delivery"])
        events.announce(order)
        if order.send_email and valid_email(order.email):
            transaction.on_commit(lambda: send_receipt(order_id), robust=True)


def _fail_and_refund(order: Order, reason: str) -> None:
    """Inside the delivery's transaction: the order fails, and its money goes back."""
    order.status, order.failure_reason = Status.FAILED, reason
    order.save(update_fields=["status", "failure_reason"])
    if order.payment_method == Order.PaymentMethod.BALANCE:
        wallets.transfer(
            wallets.wallet_for(order.merchant),
            order.customer.wallet,
            order.price_sats * 1000,
            memo=f"Refund of order {order.public_id}: {reason}",
            tag=PURPOSE,
        )
        order.status = Status.REFUNDED
        order.save(update_fields=["status"])
        events.announce(order)
        return
    from refunds import services as refunds

    try:
        refund = refunds.create_refund(
            order.merchant,
            order.payment,
            reason=f"Order {order.public_id} could not be delivered: {reason}",
            refund_address=order.refund_address,
            email=order.email if valid_email(order.email) else "",
        )
    except Problem as exc:  # e.g. the merchant spent the money meanwhile: say so
        log.error("order %s: no refund made (%s)", order.public_id, exc.detail)
        order.failure_reason = f"{reason}; no refund was made: {exc.detail}"[:500]
        order.save(update_fields=["failure_reason"])
        events.announce(order)
        return
    order.delivery = {"refundId": refund.public_id}
    order.save(update_fields=["delivery"])
    events.announce(order)
    if refund.state == refund.State.PENDING:
        refunds.start_payout(refund.pk)


def refund_completed(refund) -> None:
    """A refund of a failed order was paid: the order is refunded (inside its transaction)."""
    order = Order.objects.filter(public_id=refund.source_id, status=Status.FAILED).first()
    if order is not None and Order.objects.filter(pk=order.pk, status=Status.FAILED).update(
        status=Status.REFUNDED
    ):
        order.refresh_from_db()
        events.announce(order)


def valid_email(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def send_receipt(order_id: int) -> bool:
    """The buyer's receipt, once (claimed with a conditional update)."""
    claimed_at = timezone.now()
    if not Order.objects.filter(pk=order_id, receipt_sent_at__isnull=True).update(
        receipt_sent_at=claimed_at
    ):
        return False
    order = Order.objects.select_related("operator", "merchant").get(pk=order_id)
    lines = [
        f"Thank you for your order at {order.merchant.name}.",
        "",
        f"Order:    {order.public_id}",
        f"Product:  {order.operator.name} {order.value_package} {order.operator.currency}",
        f"Price:    {order.price_sats:,} sats",
        f"Paid at:  {order.paid_at:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if order.delivery.get("code"):
        lines.append(f"Your code: {order.delivery['code']}")
    if order.delivery.get("link"):
        lines.append(f"Your link: {order.delivery['link']}")
    if order.delivery.get("other"):
        lines += ["", order.delivery["other"]]
    try:
        send_mail(
            f"Your order from {order.merchant.name}",
            "\n".join(lines) + "\n",
            settings.DEFAULT_FROM_EMAIL,
            [order.email],
        )
    except Exception:
        Order.objects.filter(pk=order_id, receipt_sent_at=claimed_at).update(receipt_sent_at=None)
        raise
    return True


def sweep(limit: int = 100) -> dict:
    """Every few seconds (beat): orders whose task was lost (paid from balance but not
    processed, paid but not delivered), and receipts not sent."""
    before = timezone.now() - timedelta(seconds=settings.ORDERS_SWEEP_SECONDS)
    due = Order.objects.filter(
        status__in=(Status.PAYMENT_PENDING, Status.PAID), created_at__lt=before
    ).order_by("id")
    advanced = 0
    for order_id in due.values_list("pk", flat=True)[:limit]:
        try:
            process(order_id)
            advanced += 1
        except Exception:
            log.exception("order %s: processing failed", order_id)
    receipts = Order.objects.filter(
        status=Status.SUCCESS,
        send_email=True,
        receipt_sent_at__isnull=True,
        completed_at__lt=before,
    ).exclude(email="")
    sent = 0
    for order_id in receipts.values_list("pk", flat=True)[:limit]:
        try:
            sent += send_receipt(order_id)
        except Exception:
            log.exception("order %s: receipt not sent", order_id)
    return {"advanced": advanced, "receipts": sent}
