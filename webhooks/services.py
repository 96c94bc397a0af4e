"""The rules of webhooks: endpoints, events (the outbox) and their delivery.

Other apps announce what happened with `emit(...)`, inside the transaction of the change.
The event and one delivery per destination are written there, each delivery already
leased to the task that is queued once the transaction commits. If that message is lost
or its worker dies, the lease runs out and the beat sweep (`claim_due`) hands the delivery
to another task: a delivery can be late, never lost, and never sent by two workers at once.
A claim is short (WEBHOOKS_LEASE_SECONDS), so a dead worker's deliveries come free soon;
the attempt itself extends it to cover its timeout.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from checkout.models import Merchant
from config.prepared import Prepared, columns, insert
from config.problems import Problem
from config.ssrf import check_url

from . import dispatch, http, signing
from .models import (
    MerchantWebhookSecret,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

log = logging.getLogger(__name__)

# Event types an endpoint may subscribe to. Apps that announce their own events add them
# with `register_event_type` from their AppConfig.ready().
EVENT_TYPES = {
    "invoice.created": "A checkout invoice was created.",
    "payment.completed": "A checkout invoice was paid.",
    "payment.expired": "A checkout invoice expired unpaid.",
    "webhook.test": "A test event, sent with POST /api/webhooks/{id}/test.",
}

# Waits after the 1st, 2nd, ... failed attempt (about two days in all); then it has failed.
RETRY_DELAYS = [5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600]
JITTER = 0.2  # each wait is stretched or shrunk by up to 20%, so retries do not stampede
SECRET_OVERLAP = timedelta(hours=24)


def register_event_type(name: str, description: str) -> None:
    EVENT_TYPES[name] = description


def isoformat(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC, as the API renders timestamps."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- endpoints -------------------------------------------------------------------------


def vet_url(url: str) -> None:
    """The SSRF guard, as the merchant saves a URL. Raises UnsafeTarget with the reason."""
    check_url(url, allow_private=settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS)


def create_endpoint(
    merchant: Merchant, url: str, events: list[str], description: str = "", enabled: bool = True
) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        merchant=merchant,
        url=url,
        events=events,
        description=description,
        enabled=enabled,
        secret=signing.new_secret(),
    )


def update_endpoint(endpoint: WebhookEndpoint, **changes) -> WebhookEndpoint:
    """Apply `changes` (url, events, description, enabled) and return the endpoint as saved.
    Only those columns are written, on the row as it is now (locked), so a change made
    meanwhile to another column, such as the delivery path disabling the endpoint, stands.
    Enabling a disabled endpoint gives it a fresh start: its failure history no longer
    counts towards disabling it."""
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if changes.get("enabled") and not current.enabled:
            changes.update(
                failing_since=None,
                disabled_at=None,
                disabled_reason="",
                disabled_notice_sent_at=None,
            )
        for name, value in changes.items():
            setattr(current, name, value)
        current.save(update_fields=[*changes, "updated_at"])
    return current


def rotate_secret(holder: WebhookEndpoint | MerchantWebhookSecret) -> str:
    """A new secret; the current one keeps signing too for 24 hours. Returns the new one
    (and sets it on `holder`). The row is locked from the read of the current secret to the
    write, so of two rotations at once the second keeps the first's secret as its previous
    one: every secret handed out verifies for at least 24 hours."""
    model = type(holder)
    with transaction.atomic():
        current = model.objects.select_for_update().get(pk=holder.pk)
        holder.previous_secret = current.secret
        holder.previous_secret_expires_at = timezone.now() + SECRET_OVERLAP
        holder.secret = signing.new_secret()
        columns = ["secret", "previous_secret", "previous_secret_expires_at"]
        holder.save(update_fields=[*columns, "updated_at"] if model is WebhookEndpoint else columns)
    return holder.secret


def default_secret(merchant: Merchant) -> MerchantWebhookSecret:
    """The merchant's default secret (for checkouts' own webhookUrl), made on first use.
    Read with the merchant when it was loaded with select_related("webhook_secret")."""
    try:
        return merchant.webhook_secret
    except MerchantWebhookSecret.DoesNotExist:
        pass
    try:
        with transaction.atomic():
            made = MerchantWebhookSecret.objects.create(
                merchant=merchant, secret=signing.new_secret()
            )
    except IntegrityError:  # made at the same moment by another request
        made = MerchantWebhookSecret.objects.get(merchant=merchant)
    merchant.webhook_secret = made
    return made


# --- events ----------------------------------------------------------------------------

_enabled_endpoints = Prepared(
    lambda merchant_id: WebhookEndpoint.objects.filter(
        merchant_id=merchant_id, enabled=True
    ).values_list(*columns(WebhookEndpoint)),
    integers=True,
)


def enabled_endpoints(merchant_id: int) -> list[WebhookEndpoint]:
    """The merchant's enabled endpoints: read for every event (each invoice made has one),
    so prepared; building the query cost more than running it."""
    return _enabled_endpoints.instances(WebhookEndpoint, merchant_id)


def emit(
    merchant: Merchant,
    type: str,
    data: dict,
    *,
    source: str = "",
    extra_urls=(),
    endpoints=None,
    bare: bool = False,
) -> WebhookEvent | None:
    """Announce an event to the merchant's endpoints that subscribe to `type` and to
    `extra_urls` (signed with the merchant's default secret).

    Call it inside the transaction of the state change: the event commits or rolls back
    with it. With a `source` ("checkout:42"), an event of this type is written at most once
    for it, whoever calls again. Returns the event, or None when it was already announced
    or nobody listens. `endpoints` (internal) sends to exactly those endpoints.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {type!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("emit() belongs inside the transaction of the state change")
    if endpoints is None:
        endpoints = [e for e in enabled_endpoints(merchant.pk) if e.wants(type)]
    extra_urls = [url for url in dict.fromkeys(extra_urls) if url]
    if not endpoints and not extra_urls:
        return None
    default = default_secret(merchant) if extra_urls else None
    now = timezone.now()
    event = WebhookEvent(merchant=merchant, type=type, source=source, created_at=now)
    # bare: the body is `data` itself, for an API whose callers expect a given shape (the
    # Bitrefill seed's order webhooks); signed and delivered like every other.
    envelope = {"id": event.public_id, "type": type, "createdAt": isoformat(now), "data": data}
    event.body = json.dumps(
        data if bare else envelope,
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
    )
    if source:
        try:
            with transaction.atomic():  # a savepoint: a duplicate must not spoil the caller's
                insert(event)
        except IntegrityError:
            return None
    else:
        insert(event)
    token = uuid.uuid4().hex
    leased = dict(
        event=event,
        lease_token=token,
        locked_until=now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS),
        next_attempt_at=now,
        created_at=now,
    )
    ready = [Ready(WebhookDelivery(endpoint=e, **leased), e) for e in endpoints]
    ready += [Ready(WebhookDelivery(url=url, **leased), default) for url in extra_urls]
    for r in ready:  # one or two, mostly: each insert is prepared, a bulk one is built
        insert(r.delivery)
    _enqueue_after_commit([(r.delivery.pk, token) for r in ready], ready)
    return event


@dataclass
class Ready:
    """A delivery as `emit` wrote it, with its event, endpoint and the holder of the secrets
    that sign it: a sender in the same process attempts it without reading it back."""

    delivery: WebhookDelivery
    signer: WebhookEndpoint | MerchantWebhookSecret


def send_test_event(endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event to this endpoint only (also when it is disabled, so a merchant
    can check a fixed receiver before enabling it again)."""
    with transaction.atomic():
        event = emit(
            endpoint.merchant,
            "webhook.test",
            {"endpointId": endpoint.public_id, "message": "A test event from Zapgate."},
            endpoints=[endpoint],
        )
        return event.deliveries.get()


def _enqueue_after_commit(leases: list[tuple[int, str]], ready: list[Ready] = ()) -> None:
    # robust: a broker that is down must not fail the committed state change; the lease
    # runs out and the sweep picks the delivery up.
    transaction.on_commit(lambda: dispatch.send_soon(leases, ready), robust=True)


# --- delivery --------------------------------------------------------------------------


def claim_due(limit: int = 500) -> list[tuple[int, str]]:
    """Lease every delivery that is due and not leased (up to `limit`) and queue it.
    Returns (delivery id, lease token) of those leased."""
    now = timezone.now()
    token = uuid.uuid4().hex
    due = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
    with transaction.atomic():
        # On PostgreSQL two sweeps skip each other's rows instead of waiting; the
        # conditional UPDATE below is what makes the lease safe on every database.
        ids = list(due.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        due.filter(pk__in=ids).update(
            lease_token=token,
            locked_until=now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS),
        )
        claimed = list(
            WebhookDelivery.objects.filter(pk__in=ids, lease_token=token).values_list(
                "pk", flat=True
            )
        )
        leases = [(pk, token) for pk in claimed]
        _enqueue_after_commit(leases)
    return leases


def attempt_delivery(
    delivery_id: int, token: str, ready: Ready | None = None
) -> WebhookAttempt | None:
    """Send the delivery if this lease still holds it; record how it went. Returns the
    attempt, or None when the lease was lost (another worker has it, or it is done).
    `ready`: the delivery as `emit` just wrote it (the lease proves it unchanged since)."""
    now = timezone.now()
    # The claim was short (a dead worker's claims come free soon); while the attempt runs
    # the lease covers its whole timeout, so nobody else sends it meanwhile. A delivery in
    # hand from emit() whose claim still covers the timeout (it was made a moment ago, in a
    # transaction that committed) is sent at once: renewing it was a commit of its own on
    # the way of every first attempt (on PostgreSQL, a disk flush: a few ms of latency).
    timeout = timedelta(seconds=settings.WEBHOOKS_TIMEOUT_SECONDS)
    fresh = ready is not None and ready.delivery.locked_until >= now + timeout + timedelta(
        seconds=1
    )
    if not fresh:
        renewed = WebhookDelivery.objects.filter(
            pk=delivery_id,
            lease_token=token,
            status=WebhookDelivery.Status.PENDING,
            locked_until__gt=now,
        ).update(locked_until=now + timeout + timedelta(seconds=5))
        if not renewed:
            return None
    if ready is not None:
        delivery = ready.delivery
    else:
        delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    event, endpoint = delivery.event, delivery.endpoint
    started_at = timezone.now()
    if endpoint is not None and not endpoint.enabled and event.type != "webhook.test":
        outcome = http.Outcome(None, "", "the endpoint is disabled", 0)
        return _record(delivery, token, started_at, outcome, final=True)
    if ready is not None:
        secrets = ready.signer.signing_secrets(started_at)
    elif endpoint is not None:
        secrets = endpoint.signing_secrets(started_at)
    else:
        secrets = default_secret(event.merchant).signing_secrets(started_at)
    body = event.body.encode()
    timestamp = int(started_at.timestamp())
    headers = {
        "webhook-id": event.public_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(secrets, event.public_id, timestamp, body),
    }
    outcome = http.post(
        delivery.target_url,
        body,
        headers,
        timeout=settings.WEBHOOKS_TIMEOUT_SECONDS,
        allow_private=settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS,
    )
    return _record(delivery, token, started_at, outcome)


def _record(delivery, token, started_at, outcome: http.Outcome, final=False) -> WebhookAttempt:
    now = timezone.now()
    common = dict(
        attempt_count=F("attempt_count") + 1,
        last_status_code=outcome.status_code,
        last_error=outcome.error,
        lease_token="",
        locked_until=None,
    )
    with transaction.atomic():
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempt_count + 1,
            started_at=started_at,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            response_excerpt=outcome.excerpt,
            error=outcome.error,
        )
        mine = WebhookDelivery.objects.filter(pk=delivery.pk, lease_token=token)
        if outcome.ok:
            mine.update(
                status=WebhookDelivery.Status.DELIVERED,
                delivered_at=now,
                next_attempt_at=None,
                **common,
            )
            if delivery.endpoint_id:
                WebhookEndpoint.objects.filter(
                    pk=delivery.endpoint_id, failing_since__isnull=False
                ).update(failing_since=None)
            return attempt
        failures = delivery.failures + 1
        if final or failures > len(RETRY_DELAYS):
            status, next_attempt_at = WebhookDelivery.Status.FAILED, None
        else:
            delay = RETRY_DELAYS[failures - 1] * random.uniform(1 - JITTER, 1 + JITTER)
            status, next_attempt_at = WebhookDelivery.Status.PENDING, now + timedelta(seconds=delay)
        changed = mine.update(
            status=status, failures=failures, next_attempt_at=next_attempt_at, **common
        )
        if changed and delivery.endpoint_id and not final:
            _note_endpoint_failure(delivery.endpoint_id, now)
    return attempt


def _note_endpoint_failure(endpoint_id: int, now: datetime) -> None:
    """Start (or continue) the endpoint's run of failures; disable it when the run has
    lasted WEBHOOKS_DISABLE_AFTER_DAYS. The merchant is emailed by the sweep."""
    WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=True).update(
        failing_since=now
    )
    days = settings.WEBHOOKS_DISABLE_AFTER_DAYS
    disabled = WebhookEndpoint.objects.filter(
        pk=endpoint_id, enabled=True, failing_since__lte=now - timedelta(days=days)
    ).update(
        enabled=False,
        disabled_at=now,
        disabled_reason=f"Every delivery attempt failed for {days:g} days.",
        disabled_notice_sent_at=None,
    )
    if disabled:
        log.warning("webhook endpoint %s disabled after %g days of failures", endpoint_id, days)
        WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id, status=WebhookDelivery.Status.PENDING
        ).update(
            status=WebhookDelivery.Status.FAILED,
            next_attempt_at=None,
            lease_token="",
            locked_until=None,
            last_error="the endpoint was disabled",
        )


def redeliver(delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, whatever became of it, with a fresh retry schedule."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .get(pk=delivery.pk)
        )
        if delivery.endpoint_id and not delivery.endpoint.enabled:
            raise Problem(409, "endpoint_disabled", "The endpoint is disabled; enable it first.")
        if delivery.locked_until and delivery.locked_until > now:
            raise Problem(
                409, "delivery_in_progress", "An attempt of this delivery is already under way."
            )
        token = uuid.uuid4().hex
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.PENDING,
            failures=0,
            next_attempt_at=now,
            lease_token=token,
            locked_until=now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS),
        )
        _enqueue_after_commit([(delivery.pk, token)])
    delivery.refresh_from_db()
    return delivery


def send_disabled_notices() -> int:
    """Email each merchant whose endpoint was disabled for failing (once per disabling)."""
    sent = 0
    pending = WebhookEndpoint.objects.filter(
        enabled=False, disabled_at__isnull=False, disabled_notice_sent_at__isnull=True
    ).select_related("merchant")
    for endpoint in pending:
        taken = WebhookEndpoint.objects.filter(
            pk=endpoint.pk, disabled_notice_sent_at__isnull=True
        ).update(disabled_notice_sent_at=timezone.now())
        if not taken or not endpoint.merchant.email:
            continue
        try:
            send_mail(
                "Your webhook endpoint was disabled",
                f"Zapgate disabled the webhook endpoint {endpoint.url} ({endpoint.public_id}) "
                f"of {endpoint.merchant.name}: {endpoint.disabled_reason}\n\n"
                "Fix the receiver, then enable the endpoint again on the merchant site "
                f"({settings.PUBLIC_BASE_URL}/dashboard/webhooks/{endpoint.public_id}) or "
                f'with PATCH /api/webhooks/{endpoint.public_id} {{"enabled": true}}. Failed '
                "deliveries can be sent again with their Redeliver button.",
                None,
                [endpoint.merchant.email],
            )
            sent += 1
        except Exception:
            log.exception("could not email the disabling of endpoint %s", endpoint.public_id)
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(disabled_notice_sent_at=None)
    return sent
