"""Webhook delivery in-process, to a real HTTP receiver on loopback: signatures, retries,
one event per state change, secret rotation, the SSRF guard at send time, disabling."""

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from checkout.events import emit_checkout_event
from checkout.models import CheckoutInvoice
from checkout.services import create_merchant
from lightning import services as lightning
from lightning.backends import get_backend
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

from .webhooks_receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_targets(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOKS_TIMEOUT_SECONDS = 5


@pytest.fixture
def merchant():
    merchant, _ = create_merchant("Roastery", "owner@roastery.example")
    return merchant


def add_endpoint(merchant, url, events=("*",)):
    return services.create_endpoint(merchant, url, list(events))


def send_leased():
    """What the queued tasks do: attempt every delivery that holds a lease."""
    attempts = []
    for pk, token in WebhookDelivery.objects.exclude(lease_token="").values_list(
        "pk", "lease_token"
    ):
        attempts.append(services.attempt_delivery(pk, token))
    return attempts


def make_due_now():
    WebhookDelivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())


def sweep():
    """What the beat task does, then the tasks it queues."""
    return [services.attempt_delivery(pk, token) for pk, token in services.claim_due()]


def new_checkout(merchant, sats=2100, **fields):
    invoice = lightning.create_invoice(sats * 1000, "coffee", 900, purpose="checkout")
    return CheckoutInvoice.objects.create(
        merchant=merchant,
        invoice=invoice,
        amount=Decimal(sats),
        currency="SAT",
        sats_amount=sats,
        user_ref="order-77",
        metadata={"cart": [1, 2]},
        **fields,
    )


def pay(checkout):
    backend = get_backend()
    backend.pay_invoice(checkout.invoice.bolt11)
    return lightning.apply_settlements([backend.lookup_invoice(checkout.invoice.payment_hash)])


def test_a_payment_is_announced_signed_to_every_subscribed_endpoint(merchant, receiver):
    one = add_endpoint(merchant, receiver.url + "/one", ["payment.completed"])
    two = add_endpoint(merchant, receiver.url + "/two")
    add_endpoint(merchant, receiver.url + "/three", ["payment.expired"])
    checkout = new_checkout(merchant)

    pay(checkout)
    # The node's settlement applied again (a replay, a second watcher): still one event.
    lightning.apply_settlements([get_backend().lookup_invoice(checkout.invoice.payment_hash)])
    # And announced again by hand: the event exists once per (checkout, type), whoever asks.
    with transaction.atomic():
        checkout.refresh_from_db()
        assert emit_checkout_event(checkout, "payment.completed") is None
    send_leased()

    assert sorted(r.path for r in receiver.requests) == ["/hooks/one", "/hooks/two"]
    assert WebhookEvent.objects.filter(type="payment.completed").count() == 1
    for received, endpoint in zip(
        sorted(receiver.requests, key=lambda r: r.path), [one, two], strict=True
    ):
        payload = Webhook(endpoint.secret).verify(received.body, received.headers)
        assert payload["type"] == "payment.completed"
        assert payload["id"] == received.webhook_id
        assert payload["id"].startswith("evt_")
        assert payload["data"] == {
            "invoiceId": checkout.public_id,
            "userRef": "order-77",
            "status": "paid",
            "amount": payload["data"]["amount"],
            "currency": "SAT",
            "amountSats": 2100,
            "paidAt": payload["data"]["paidAt"],
            "metadata": {"cart": [1, 2]},
        }
        assert Decimal(payload["data"]["amount"]) == 2100
        assert payload["data"]["paidAt"].endswith("Z")
    # A signature made with another endpoint's secret does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(one.secret).verify(
            receiver.requests[0].body,
            {
                **receiver.requests[0].headers,
                "webhook-signature": receiver.requests[0].headers["webhook-signature"][:-4]
                + "AAA=",
            },
        )
    assert WebhookDelivery.objects.filter(status="delivered").count() == 2


def test_expiry_is_announced_once(merchant, receiver):
    add_endpoint(merchant, receiver.url)
    checkout = new_checkout(merchant)
    lightning.expire_invoices(now=timezone.now() + timedelta(hours=1))
    lightning.expire_invoices(now=timezone.now() + timedelta(hours=2))
    send_leased()
    assert [json.loads(r.body)["type"] for r in receiver.requests] == ["payment.expired"]
    assert json.loads(receiver.requests[0].body)["data"]["status"] == "expired"
    assert json.loads(receiver.requests[0].body)["data"]["invoiceId"] == checkout.public_id


def test_an_invoice_of_no_checkout_announces_nothing(merchant, receiver):
    add_endpoint(merchant, receiver.url)
    invoice = lightning.create_invoice(5000, "l402", 900)
    get_backend().pay_invoice(invoice.bolt11)
    lightning.apply_settlements([get_backend().lookup_invoice(invoice.payment_hash)])
    assert WebhookEvent.objects.count() == 0


def test_receiver_down_then_up_delivers_once_with_the_same_id(merchant):
    receiver = Receiver().start()
    receiver.stop()  # down: nothing listens on its port
    endpoint = add_endpoint(merchant, receiver.url)
    with transaction.atomic():
        event = services.emit(merchant, "webhook.test", {"n": 1})

    [attempt] = send_leased()
    delivery = WebhookDelivery.objects.get()
    assert attempt.status_code is None and "Connection" in attempt.error
    assert delivery.status == "pending" and delivery.attempt_count == 1
    wait = (delivery.next_attempt_at - attempt.started_at).total_seconds()
    assert 4 <= wait <= 6  # the first backoff step: 5 s, with jitter
    assert sweep() == []  # not due yet

    receiver = Receiver(port=receiver.port).start()
    try:
        make_due_now()
        sweep()
        sweep()
        make_due_now()
        assert sweep() == []  # delivered: never again
    finally:
        receiver.stop()
    [received] = receiver.requests
    assert received.webhook_id == event.public_id
    Webhook(endpoint.secret).verify(received.body, received.headers)
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempt_count == 2
    assert [a.status_code for a in delivery.attempts.all()] == [None, 200]


def test_non_2xx_and_redirects_are_retried_with_growing_waits_then_fail(merchant):
    answers = [500, 302, 404] + [503] * 20
    receiver = Receiver(answer=lambda n: answers[n]).start()
    try:
        add_endpoint(merchant, receiver.url)
        with transaction.atomic():
            services.emit(merchant, "webhook.test", {})
        send_leased()
        waits = []
        for _ in range(len(services.RETRY_DELAYS)):
            delivery = WebhookDelivery.objects.get()
            last = delivery.attempts.last()
            waits.append((delivery.next_attempt_at - last.started_at).total_seconds())
            make_due_now()
            sweep()
    finally:
        receiver.stop()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert delivery.attempt_count == len(services.RETRY_DELAYS) + 1 == len(receiver.requests)
    for wait, base in zip(waits, services.RETRY_DELAYS, strict=True):
        assert base * 0.79 <= wait <= base * 1.21
    first, second = delivery.attempts.all()[:2]
    assert first.status_code == 500 and first.response_excerpt == "receiver says no"
    assert second.status_code == 302 and "redirects are not followed" in second.error
    assert len({r.webhook_id for r in receiver.requests}) == 1


def test_a_lease_is_held_by_one_sender_only(merchant, receiver):
    add_endpoint(merchant, receiver.url)
    with transaction.atomic():
        services.emit(merchant, "webhook.test", {})
    delivery = WebhookDelivery.objects.get()
    assert services.attempt_delivery(delivery.pk, "not-the-lease") is None
    assert services.claim_due() == []  # leased to the queued task, not due for the sweep
    token = delivery.lease_token
    assert services.attempt_delivery(delivery.pk, token) is not None
    assert services.attempt_delivery(delivery.pk, token) is None  # a repeated message
    assert len(receiver.requests) == 1


def test_a_lost_task_message_is_swept_up_after_the_lease(merchant, receiver, settings):
    add_endpoint(merchant, receiver.url)
    with transaction.atomic():
        services.emit(merchant, "webhook.test", {})
    assert sweep() == []
    WebhookDelivery.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    assert len(sweep()) == 1
    assert WebhookDelivery.objects.get().status == "delivered"
    assert len(receiver.requests) == 1


def test_rotation_sends_both_signatures_for_24_hours(merchant, receiver):
    endpoint = add_endpoint(merchant, receiver.url)
    old = endpoint.secret
    new = services.rotate_secret(endpoint)
    assert new != old and new.startswith("whsec_")
    with transaction.atomic():
        services.emit(merchant, "webhook.test", {})
    send_leased()
    [received] = receiver.requests
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(received.body, received.headers)
    Webhook(new).verify(received.body, received.headers)

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with transaction.atomic():
        services.emit(merchant, "webhook.test", {})
    send_leased()
    later = receiver.requests[1]
    Webhook(new).verify(later.body, later.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(later.body, later.headers)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]"]
)
def test_send_time_guard_refuses_private_addresses(merchant, settings, host):
    endpoint = add_endpoint(merchant, f"http://{host}:9/hook")  # saved while allowed
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    with transaction.atomic():
        services.emit(merchant, "webhook.test", {})
    [attempt] = send_leased()
    assert attempt.status_code is None
    assert attempt.error.startswith("refused: ") and "private, loopback" in attempt.error
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == "pending" and delivery.last_error == attempt.error


def test_send_time_guard_connects_to_the_checked_address(merchant, receiver):
    # "localhost" resolves here; the request goes to the address the guard checked, with
    # the URL's host in the Host header.
    add_endpoint(merchant, f"http://localhost:{receiver.port}/hooks")
    with transaction.atomic():
        services.emit(merchant, "webhook.test", {})
    send_leased()
    [received] = receiver.requests
    assert received.headers["host"] == f"localhost:{receiver.port}"


def test_an_endpoint_failing_for_days_is_disabled_and_the_merchant_told(merchant, settings):
    receiver = Receiver(answer=lambda n: 500).start()
    try:
        endpoint = add_endpoint(merchant, receiver.url)
        with transaction.atomic():
            services.emit(merchant, "webhook.test", {})
            services.emit(merchant, "webhook.test", {})
        send_leased()
        endpoint.refresh_from_db()
        assert endpoint.enabled and endpoint.failing_since is not None
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            failing_since=timezone.now() - timedelta(days=settings.WEBHOOKS_DISABLE_AFTER_DAYS)
        )
        make_due_now()
        sweep()
    finally:
        receiver.stop()
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "failed for 5 days" in endpoint.disabled_reason
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"failed"}
    assert services.send_disabled_notices() == 1
    assert services.send_disabled_notices() == 0  # told once
    [message] = mail.outbox
    assert message.to == ["owner@roastery.example"] and endpoint.url in message.body
    with transaction.atomic():
        assert services.emit(merchant, "webhook.test", {}) is None  # nothing goes there now

    services.update_endpoint(endpoint, enabled=True)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.disabled_reason == ""


def test_a_success_ends_the_run_of_failures(merchant):
    receiver = Receiver(answer=lambda n: 500 if n == 0 else 200).start()
    try:
        endpoint = add_endpoint(merchant, receiver.url)
        with transaction.atomic():
            services.emit(merchant, "webhook.test", {})
        send_leased()
        assert WebhookEndpoint.objects.get().failing_since is not None
        make_due_now()
        sweep()
    finally:
        receiver.stop()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.enabled


def test_emit_belongs_inside_a_transaction_and_knows_its_types(merchant):
    with pytest.raises(ValueError, match="unknown webhook event type"):
        with transaction.atomic():
            services.emit(merchant, "payment.maybe", {})


def test_the_response_read_is_capped(merchant):
    import http.server
    import threading

    class Big(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(10**7))
            self.end_headers()
            self.wfile.write(b"x" * 10**7)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        add_endpoint(merchant, f"http://127.0.0.1:{server.server_address[1]}/")
        with transaction.atomic():
            services.emit(merchant, "webhook.test", {})
        [attempt] = send_leased()
    finally:
        server.shutdown()
        server.server_close()
    assert attempt.status_code == 200 and len(attempt.response_excerpt) == 4096


def test_a_stalling_receiver_times_out(merchant, settings):
    settings.WEBHOOKS_TIMEOUT_SECONDS = 0.5
    receiver = Receiver(answer=lambda n: "stall").start()
    try:
        add_endpoint(merchant, receiver.url)
        with transaction.atomic():
            services.emit(merchant, "webhook.test", {})
        [attempt] = send_leased()
    finally:
        receiver.stop()
    assert attempt.status_code is None and "timed out" in attempt.error
    assert WebhookDelivery.objects.get().status == "pending"


@pytest.mark.django_db(transaction=True)
def test_a_claim_is_short_but_an_attempt_under_way_holds_it_for_its_timeout(merchant, settings):
    """A worker that dies holding claims frees them within WEBHOOKS_LEASE_SECONDS (15 s by
    default, not a minute); a slow receiver's attempt keeps its delivery to itself."""
    settings.WEBHOOKS_TIMEOUT_SECONDS = 30
    receiver = Receiver(answer=lambda n: "stall").start()
    add_endpoint(merchant, receiver.url)
    with transaction.atomic():
        services.emit(merchant, "webhook.test", {})
    delivery = WebhookDelivery.objects.get()
    assert delivery.locked_until <= timezone.now() + timedelta(seconds=15)

    done = []

    def send():
        try:
            done.append(services.attempt_delivery(delivery.pk, delivery.lease_token))
        finally:
            connection.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.requests, "the attempt reached the receiver"
        delivery.refresh_from_db()
        assert delivery.locked_until >= timezone.now() + timedelta(seconds=29)
        assert services.claim_due() == []
    finally:
        receiver.release.set()
        sender.join(35)
        receiver.stop()
    assert done and done[0] is not None
