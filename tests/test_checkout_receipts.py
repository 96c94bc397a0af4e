"""Receipt emails: sent once the invoice is paid, exactly once, and never lost when the
task after commit is (the sweep sends it)."""

import threading

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection

from checkout import receipts
from checkout.models import CheckoutInvoice
from checkout.services import create_merchant
from config.celery import app as celery_app
from lightning import services as lightning_services
from lightning.backends import get_backend

from .test_checkout_api import INVOICES, Api


@pytest.fixture(autouse=True)
def _eager_celery(monkeypatch):
    """Tasks run in this process when they are queued (after commit)."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture
def api(db):
    _, key = create_merchant("Receipt Roasters")
    return Api(key)


def settle(body):
    """The buyer's wallet pays, and the payment is applied as the watcher would."""
    get_backend().pay_invoice(body["lightningInvoice"])
    return lightning_services.apply_settlements([get_backend().lookup_invoice(body["paymentHash"])])


def create(api, **fields):
    body = {
        "amount": "12.50",
        "currency": "USD",
        "description": "Espresso beans",
        "email": "buyer@example.com",
        "sendEmail": True,
        **fields,
    }
    response = api.post(INVOICES, body)
    assert response.status_code == 201, response.content
    return response.json()


def test_a_receipt_is_sent_once_the_invoice_is_paid(api, django_capture_on_commit_callbacks):
    body = create(api, userRef="order-5")
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        settle(body)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["buyer@example.com"]
    assert message.subject == "Your receipt from Receipt Roasters"
    assert body["invoiceId"] in message.body and "12.50 USD" in message.body
    assert "12500 sats" in message.body and body["paymentHash"] in message.body
    checkout = CheckoutInvoice.objects.select_related("invoice").get()
    assert checkout.invoice.preimage in message.body and "order-5" in message.body
    assert checkout.receipt_sent_at is not None
    assert api.get(f"{INVOICES}/{body['invoiceId']}").json()["receiptSentAt"]
    # A replayed settlement, the sweep and a stray task send nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        settle_again = lightning_services.apply_settlements(
            [get_backend().lookup_invoice(body["paymentHash"])]
        )
    assert settle_again == []
    assert receipts.send_due_receipts() == 0
    assert receipts.send_receipt(checkout.pk) is False
    assert len(mail.outbox) == 1


def test_no_receipt_without_send_email_or_before_payment(api, django_capture_on_commit_callbacks):
    quiet = create(api, sendEmail=False)
    unpaid = create(api)
    with django_capture_on_commit_callbacks(execute=True):
        settle(quiet)
    assert mail.outbox == []
    assert receipts.send_due_receipts() == 0
    assert CheckoutInvoice.objects.get(public_id=unpaid["invoiceId"]).receipt_due_at is None


def test_the_sweep_sends_a_receipt_whose_task_was_lost(api, django_capture_on_commit_callbacks):
    body = create(api)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        settle(body)  # the process dies after commit: the task is never queued
    assert callbacks and mail.outbox == []
    checkout = CheckoutInvoice.objects.get()
    assert checkout.receipt_due_at is not None and checkout.receipt_sent_at is None
    assert receipts.send_due_receipts() == 1
    assert len(mail.outbox) == 1
    assert receipts.send_due_receipts() == 0
    assert len(mail.outbox) == 1


def test_a_failed_send_is_retried_by_the_sweep(api, settings, django_capture_on_commit_callbacks):
    body = create(api)
    settings.EMAIL_BACKEND = "tests.test_checkout_receipts.FailingBackend"
    with django_capture_on_commit_callbacks(execute=True):
        settle(body)  # the task's send fails; the payment stands
    checkout = CheckoutInvoice.objects.select_related("invoice").get()
    assert checkout.invoice.state == "paid" and checkout.receipt_sent_at is None
    assert receipts.send_due_receipts() == 0  # still failing: logged, kept due
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert receipts.send_due_receipts() == 1
    assert len(mail.outbox) == 1


class FailingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise OSError("SMTP server unreachable")


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_send_one_receipt():
    _, key = create_merchant("Race Roasters")
    body = create(Api(key))
    get_backend().pay_invoice(body["lightningInvoice"])
    lightning_services.apply_settlements([get_backend().lookup_invoice(body["paymentHash"])])
    checkout = CheckoutInvoice.objects.get()
    assert len(mail.outbox) == 1  # the task after commit (eager) sent it
    CheckoutInvoice.objects.filter(pk=checkout.pk).update(receipt_sent_at=None)
    mail.outbox.clear()
    barrier = threading.Barrier(8)
    results = []

    def send():
        try:
            barrier.wait()
            results.append(receipts.send_receipt(checkout.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert len(mail.outbox) == 1
