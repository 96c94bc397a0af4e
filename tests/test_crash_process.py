"""The stack `make run` starts (uvicorn, a Celery worker with the watcher and beat),
SIGKILLed as a whole three times while a client creates and pays checkout invoices as fast
as it can. Every invoice the node settled must end paid, and be announced once, soon after
the last restart: a crash may delay a payment's record, never lose it or leave it stuck."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from django.db.models import Count

from lightning.models import DevNodeInvoice, Invoice, InvoiceTransition

from .processes import Stack, free_port, wait_for
from .webhooks_receiver import Receiver

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

KILLS = 3
SECONDS_BETWEEN_KILLS = 15


class Shopper(threading.Thread):
    """Creates a checkout invoice and pays it with the dev wallet, again and again."""

    def __init__(self, stack: Stack):
        super().__init__(daemon=True)
        self.stack = stack
        self.halt = threading.Event()
        self.paid: set[str] = set()
        self.errors = 0

    def run(self):
        with httpx.Client(timeout=10) as client:
            while not self.halt.is_set():
                try:
                    made = client.post(
                        f"{self.stack.base}/api/checkout/invoices",
                        json={"amount": "21", "currency": "SAT"},
                        headers={"X-Api-Key": self.stack.key},
                    )
                    if made.status_code != 201:
                        raise httpx.HTTPError(f"create: {made.status_code}")
                    paid = client.post(
                        f"{self.stack.base}/api/dev/pay",
                        json={"bolt11": made.json()["lightningInvoice"]},
                    )
                    if paid.status_code == 200:
                        self.paid.add(made.json()["invoiceId"])
                except httpx.HTTPError:
                    self.errors += 1  # the stack is down or restarting
                    time.sleep(0.05)


def test_three_kills_under_load_lose_no_payment(tmp_path):
    # The pool `make run` uses (threads); prefork's kills are in test_worker_process.
    receiver = Receiver().start()
    stack = Stack(tmp_path, free_port(), "threads").start()
    made = httpx.post(
        f"{stack.base}/api/webhooks",
        json={"url": receiver.url, "events": ["payment.completed"]},
        headers={"X-Api-Key": stack.key},
    )
    assert made.status_code == 201, made.text
    shopper = Shopper(stack)
    shopper.start()
    try:
        for _ in range(KILLS):
            time.sleep(SECONDS_BETWEEN_KILLS)
            stack.kill()
            stack.start()
        time.sleep(3)  # load on the restarted stack too
        shopper.halt.set()
        shopper.join(15)
        last_restart = time.monotonic()

        settled = set(
            DevNodeInvoice.objects.filter(state="SETTLED").values_list("payment_hash", flat=True)
        )
        assert len(settled) > 100, "the load made too few payments to prove anything"

        def unpaid():
            paid = set(
                Invoice.objects.filter(payment_hash__in=settled, state="paid").values_list(
                    "payment_hash", flat=True
                )
            )
            return settled - paid

        behind = len(unpaid())
        # A killed worker's lease on the stream runs out WATCHER_LEASE_SECONDS (15) after the
        # kill; only then may the new worker stream, and it has the backlog of every kill to
        # catch up on, on a machine that CI keeps busy: 60 s is ample, and the figure printed.
        wait_for(lambda: not unpaid(), 60, f"all {len(settled)} settled invoices to be paid")
        print(
            f"\n{len(settled)} paid ({behind} not yet when the load stopped), "
            f"{time.monotonic() - last_restart:.1f} s after the restart"
        )
        repeated = (
            InvoiceTransition.objects.filter(to_state="paid")
            .values("invoice_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        assert not repeated.exists(), "an invoice was paid twice"

        checkout_ids = set(
            Invoice.objects.filter(payment_hash__in=settled).values_list(
                "checkout__public_id", flat=True
            )
        )

        def announced():
            ids: dict[str, set] = {}
            for request in list(receiver.requests):
                event = json.loads(request.body)
                ids.setdefault(event["data"]["invoiceId"], set()).add(event["id"])
            return ids

        wait_for(
            lambda: set(announced()) >= checkout_ids,
            90,
            "a payment.completed event for every paid invoice",
        )
        assert all(len(event_ids) == 1 for event_ids in announced().values())
        assert shopper.paid <= checkout_ids
    finally:
        shopper.halt.set()
        stack.stop()
        receiver.stop()
