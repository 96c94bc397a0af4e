"""Notifications to merchants: an email on each sale (written with the payment, sent once,
never lost) and a daily summary of yesterday's sales (sent once a day, after its hour)."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from checkout.models import Merchant
from checkout.services import create_checkout_invoice, create_merchant, create_product
from config.celery import app as celery_app
from lightning import reactions
from lightning import services as lightning_services
from lightning.backends import get_backend
from lightning.models import Invoice, PendingReaction
from notifications import receivers, sales, summaries
from notifications.models import SaleNotice
from wallets import services as wallets
from wallets.models import Payment

pytestmark = pytest.mark.django_db

OWNER = "owner@corner.example"


@pytest.fixture(autouse=True)
def _eager_celery(monkeypatch):
    """Tasks run in this process when they are queued (after commit)."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture(autouse=True)
def _summary_hour(settings):
    settings.NOTIFY_DAILY_SUMMARY_HOUR_UTC = 7


class FailingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise OSError("SMTP server unreachable")


FAILING_BACKEND = "tests.test_notifications.FailingBackend"
LOCMEM_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def merchant(name="Corner Café", email=OWNER, **rules):
    found, _ = create_merchant(name, email=email)
    Merchant.objects.filter(pk=found.pk).update(**rules)
    found.refresh_from_db()
    return found


def checkout(owner, **terms):
    terms = {"amount": Decimal("12.50"), "currency": "USD", "description": "Two espressos"} | terms
    return create_checkout_invoice(owner, terms)[0]


def pay(invoice: Invoice):
    """The buyer's wallet pays, and the payment is applied as the watcher would."""
    get_backend().pay_invoice(invoice.bolt11)
    return apply_settlement(invoice)


def apply_settlement(invoice: Invoice):
    """The node's settlement of `invoice`, applied (again, when it was already)."""
    return lightning_services.apply_settlements(
        [get_backend().lookup_invoice(invoice.payment_hash)]
    )


# --- each sale ---------------------------------------------------------------------------


def test_a_sale_is_notified_once_even_when_the_payment_is_replayed(
    settings, django_capture_on_commit_callbacks
):
    owner = merchant(notify_each_sale=True)
    sold = checkout(owner)
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(sold.invoice)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [OWNER]
    assert message.subject == "New sale: 12.50 USD (12,500 sats) — Two espressos"
    link = f"{settings.PUBLIC_BASE_URL}/dashboard/invoices/{sold.public_id}"
    assert link in message.body
    assert "12,500 sats" in message.body and "12.50 USD" in message.body
    assert "Two espressos" in message.body and sold.public_id in message.body
    paid_at = Invoice.objects.get(pk=sold.invoice_id).paid_at.astimezone(UTC)
    assert f"{paid_at:%Y-%m-%d %H:%M:%S} UTC" in message.body
    assert SaleNotice.objects.get().sent_at is not None

    # The payment applied again, the reaction run again (a retry), the sweep, a stray task:
    # nothing more is owed or sent.
    with django_capture_on_commit_callbacks(execute=True):
        assert apply_settlement(sold.invoice) == []
        receivers.record_sale_notice_when_paid(
            Invoice.objects.get(pk=sold.invoice_id), "open", "paid"
        )
    assert SaleNotice.objects.count() == 1
    assert sales.send_due_sale_notices() == 0
    assert sales.send_sale_notice(sold.invoice_id) is False
    assert len(mail.outbox) == 1


def test_a_product_sale_names_the_product_and_quantity(django_capture_on_commit_callbacks):
    owner = merchant(notify_each_sale=True)
    beans = create_product(
        owner, name="Espresso beans 250 g", price=Decimal("2100"), currency="SAT"
    )
    sold = checkout(owner, product_id=beans.public_id, quantity=3, description="")
    with django_capture_on_commit_callbacks(execute=True):
        pay(sold.invoice)
    (message,) = mail.outbox
    assert message.subject == "New sale: 6,300 sats — 3 × Espresso beans 250 g"
    assert beans.public_id in message.body and "Quantity:     3" in message.body
    assert " USD" not in message.body


def test_every_payment_the_merchant_receives_is_a_sale(django_capture_on_commit_callbacks):
    owner = merchant(notify_each_sale=True)
    payment = wallets.create_invoice(wallets.wallet_for(owner), 2100, memo="Tip jar")
    with django_capture_on_commit_callbacks(execute=True):
        pay(payment.invoice)
    (message,) = mail.outbox
    assert message.subject == "New sale: 2,100 sats — Wallet invoice: Tip jar"
    assert payment.invoice.payment_hash in message.body


def test_no_notice_when_the_rule_is_off_or_there_is_no_email(django_capture_on_commit_callbacks):
    quiet = merchant("Quiet Shop", notify_each_sale=False, notify_daily_summary=True)
    nowhere = merchant("No Address", email="", notify_each_sale=True)
    with django_capture_on_commit_callbacks(execute=True):
        pay(checkout(quiet).invoice)
        pay(checkout(nowhere).invoice)
    assert Invoice.objects.filter(state="paid").count() == 2
    assert not SaleNotice.objects.exists()
    assert sales.send_due_sale_notices() == 0
    assert mail.outbox == []


def test_a_failed_send_stays_due_and_the_sweep_sends_it(
    settings, django_capture_on_commit_callbacks
):
    owner = merchant(notify_each_sale=True)
    sold = checkout(owner)
    settings.EMAIL_BACKEND = FAILING_BACKEND
    with django_capture_on_commit_callbacks(execute=True):
        pay(sold.invoice)  # the task's send fails; the payment stands
    assert Invoice.objects.get(pk=sold.invoice_id).state == "paid"
    notice = SaleNotice.objects.get()
    assert notice.sent_at is None  # the claim was given back
    assert sales.send_due_sale_notices() == 0  # still failing: logged, kept due
    settings.EMAIL_BACKEND = LOCMEM_BACKEND
    assert sales.send_due_sale_notices() == 1
    assert [m.to for m in mail.outbox] == [[OWNER]]
    assert sales.send_due_sale_notices() == 0


def test_the_sweep_sends_a_notice_whose_task_was_lost(django_capture_on_commit_callbacks):
    owner = merchant(notify_each_sale=True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pay(checkout(owner).invoice)  # the process dies after commit: no task queued
    assert callbacks and mail.outbox == []
    assert SaleNotice.objects.get().sent_at is None
    assert sales.send_due_sale_notices() == 1
    assert len(mail.outbox) == 1


def test_a_failing_notice_reaction_never_stops_the_payment(
    monkeypatch, django_capture_on_commit_callbacks
):
    owner = merchant(notify_each_sale=True)
    sold = checkout(owner)

    def broken(invoice):
        raise RuntimeError("notices are down")

    with monkeypatch.context() as patched, django_capture_on_commit_callbacks(execute=True):
        patched.setattr(sales, "mark_sale_notice_due", broken)
        assert len(pay(sold.invoice)) == 1

    # The payment is recorded, the merchant's wallet credited; the notice is late, not lost.
    assert Invoice.objects.get(pk=sold.invoice_id).state == "paid"
    assert Payment.objects.get(invoice_id=sold.invoice_id).status == "success"
    pending = PendingReaction.objects.get()
    assert (pending.invoice_id, pending.name, pending.to_state) == (
        sold.invoice_id,
        "notifications.sale",
        "paid",
    )
    assert "notices are down" in pending.last_error
    assert not SaleNotice.objects.exists() and mail.outbox == []

    PendingReaction.objects.update(next_attempt_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert reactions.retry_pending_reactions() == {"done": 1, "failed": 0}
    assert not PendingReaction.objects.exists()
    assert [m.to for m in mail.outbox] == [[OWNER]]


# --- the daily summary -------------------------------------------------------------------


def paid_on(sold, moment):
    """Record the checkout's payment as made at `moment`."""
    Invoice.objects.filter(pk=sold.invoice_id).update(paid_at=moment)


@pytest.fixture
def yesterdays_sales():
    """A merchant with two sales yesterday, one today and one open checkout."""
    owner = merchant(notify_daily_summary=True)
    beans = create_product(owner, name="Espresso beans", price=Decimal("12.50"), currency="USD")
    stickers = create_product(owner, name="Sticker pack", price=Decimal("2100"), currency="SAT")
    today = timezone.now().astimezone(UTC).date()
    noon_yesterday = datetime.combine(today - timedelta(days=1), time(12), tzinfo=UTC)
    for product, quantity in ((beans, 2), (stickers, 1)):
        sold = checkout(owner, product_id=product.public_id, quantity=quantity)
        pay(sold.invoice)
        paid_on(sold, noon_yesterday)
    pay(checkout(owner, amount=Decimal("99"), currency="EUR").invoice)  # today's: not counted
    checkout(owner)  # open
    # Two days ago: not counted either.
    old = checkout(owner, amount=Decimal("1.00"))
    pay(old.invoice)
    paid_on(old, noon_yesterday - timedelta(days=1))
    mail.outbox.clear()
    return owner, today


def at(today, hour):
    return datetime.combine(today, time(hour), tzinfo=UTC)


def test_the_daily_summary_is_sent_once_a_day_after_its_hour(yesterdays_sales):
    owner, today = yesterdays_sales
    yesterday = today - timedelta(days=1)

    assert summaries.send_daily_summaries(now=at(today, 6)) == 0  # before the hour
    assert mail.outbox == []

    assert summaries.send_daily_summaries(now=at(today, 8)) == 1
    (message,) = mail.outbox
    assert message.to == [OWNER]
    assert message.subject == f"Your sales on {yesterday:%Y-%m-%d}: 2 paid, 27,100 sats"
    body = message.body
    assert "Paid:           2\n" in body
    assert "Revenue:        27,100 sats\n" in body and "25.00 USD" in body
    assert "EUR" not in body  # today's sale is in tomorrow's summary
    assert "  1. Espresso beans: 2 sold, 25,000 sats\n" in body
    assert "  2. Sticker pack: 1 sold, 2,100 sats\n" in body
    assert "Open invoices:  1 " in body
    owner.refresh_from_db()
    assert owner.daily_summary_sent_on == today

    # Later beats the same day send nothing; the next day's does.
    assert summaries.send_daily_summaries(now=at(today, 9)) == 0
    assert summaries.send_daily_summary(owner.pk, today) is False
    assert len(mail.outbox) == 1
    assert summaries.send_daily_summaries(now=at(today + timedelta(days=1), 7)) == 1
    assert len(mail.outbox) == 2
    assert "Paid:           1\n" in mail.outbox[1].body  # today's EUR sale
    assert "99.00 EUR" in mail.outbox[1].body


def test_no_summary_for_merchants_who_did_not_ask_or_have_no_email(yesterdays_sales):
    owner, today = yesterdays_sales
    merchant("Quiet Shop", notify_each_sale=True)
    merchant("No Address", email="", notify_daily_summary=True)
    Merchant.objects.filter(pk=owner.pk).update(notify_daily_summary=False)
    assert summaries.send_daily_summaries(now=at(today, 8)) == 0
    assert mail.outbox == []


def test_a_failed_summary_gives_the_day_back(yesterdays_sales, settings):
    owner, today = yesterdays_sales
    settings.EMAIL_BACKEND = FAILING_BACKEND
    assert summaries.send_daily_summaries(now=at(today, 8)) == 0
    owner.refresh_from_db()
    assert owner.daily_summary_sent_on is None
    settings.EMAIL_BACKEND = LOCMEM_BACKEND
    assert summaries.send_daily_summaries(now=at(today, 8)) == 1
    assert len(mail.outbox) == 1
