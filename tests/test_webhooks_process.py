"""Webhooks through real processes: a Celery worker (with the watcher) and Celery beat,
a payment on the dev node, and a real HTTP receiver on loopback."""

import json
import subprocess
import sys
import time

import pytest
from standardwebhooks.webhooks import Webhook

from checkout.models import CheckoutInvoice
from checkout.services import create_merchant
from lightning import services as lightning
from lightning.backends import get_backend
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEvent

from .processes import ROOT, Worker, child_env, wait_for
from .webhooks_receiver import Receiver

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

WORKER_ENV = dict(
    WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
    WEBHOOKS_TIMEOUT_SECONDS="5",
    WEBHOOKS_LEASE_SECONDS="6",
    WEBHOOKS_SWEEP_SECONDS="0.5",
)


class Beat:
    def __init__(self, tmp_path):
        self.log_path = tmp_path / "beat.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(tmp_path / "beat-schedule"),
            ],
            cwd=ROOT,
            env=child_env(tmp_path, **WORKER_ENV),
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
        )

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)


@pytest.fixture
def merchant():
    merchant, _ = create_merchant("Roastery")
    return merchant


def new_checkout(merchant, sats=1500):
    invoice = lightning.create_invoice(sats * 1000, "coffee", 900, purpose="checkout")
    return CheckoutInvoice.objects.create(
        merchant=merchant, invoice=invoice, amount=sats, currency="SAT", sats_amount=sats
    )


def streaming(worker):
    return "streaming devnode:" in worker.log()


def test_one_payment_one_event_per_endpoint(tmp_path, merchant):
    receiver = Receiver().start()
    endpoints = [
        services.create_endpoint(merchant, f"{receiver.url}/{n}", ["payment.completed"])
        for n in range(2)
    ]
    checkout = new_checkout(merchant)
    worker = Worker(tmp_path, "w0", **WORKER_ENV).start()
    beat = Beat(tmp_path)
    try:
        wait_for(lambda: streaming(worker), 30, "the worker's watcher to stream")
        get_backend().pay_invoice(checkout.invoice.bolt11)
        wait_for(lambda: len(receiver.requests) >= 2, 30, "both endpoints to be called")
        # Let the sweep run a few more times: nothing more may arrive.
        wait_for(lambda: beat.log_path.read_text().count("deliver_due") >= 4, 30, "sweeps")
    finally:
        beat.stop()
        worker.stop()
        receiver.stop()
    assert sorted(r.path for r in receiver.requests) == ["/hooks/0", "/hooks/1"]
    [event] = WebhookEvent.objects.all()
    for received in receiver.requests:
        endpoint = endpoints[int(received.path[-1])]
        payload = Webhook(endpoint.secret).verify(received.body, received.headers)
        assert payload["id"] == event.public_id and payload["type"] == "payment.completed"
        assert payload["data"]["invoiceId"] == checkout.public_id
        assert payload["data"]["status"] == "paid"
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_worker_killed_mid_delivery_delivers_after_restart(tmp_path, merchant):
    receiver = Receiver(answer=lambda n: "stall" if n == 0 else 200).start()
    endpoint = services.create_endpoint(merchant, receiver.url, ["*"])
    checkout = new_checkout(merchant)
    workers = [Worker(tmp_path, "w0", **WORKER_ENV).start()]
    beat = Beat(tmp_path)
    try:
        wait_for(lambda: streaming(workers[0]), 30, "the worker's watcher to stream")
        get_backend().pay_invoice(checkout.invoice.bolt11)
        wait_for(lambda: receiver.requests, 30, "the first attempt to reach the receiver")
        workers[0].kill()  # while the receiver holds the request open
        time.sleep(0.5)
        assert WebhookDelivery.objects.get().status == "pending"
        workers.append(Worker(tmp_path, "w1", **WORKER_ENV).start())
        wait_for(
            lambda: WebhookDelivery.objects.get().status == "delivered",
            60,
            "the delivery to be made by the restarted worker",
        )
    finally:
        beat.stop()
        for worker in workers:
            worker.stop()
        receiver.stop()
    assert len(receiver.requests) == 2
    [event] = WebhookEvent.objects.all()
    assert {r.webhook_id for r in receiver.requests} == {event.public_id}
    assert json.loads(receiver.requests[1].body)["type"] == "payment.completed"
    Webhook(endpoint.secret).verify(receiver.requests[1].body, receiver.requests[1].headers)
    # The killed attempt left no answer; the one after the restart is the recorded one.
    delivery = WebhookDelivery.objects.get()
    assert [a.status_code for a in delivery.attempts.all()] == [200]
