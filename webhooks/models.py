"""Webhook endpoints, and the outbox: events and their deliveries.

An event and its deliveries are written in the same transaction as the state change they
announce, so nothing is announced that did not happen and nothing that happened is lost.
A delivery is sent by whoever holds its lease (`lease_token` until `locked_until`): the
lease is taken with a conditional UPDATE, so two workers never send the same attempt.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from checkout.models import public_id
from config.fields import EncryptedTextField


class SigningSecretField(EncryptedTextField):
    """A `whsec_...` secret, encrypted at rest under WEBHOOKS_SECRETS_KEY."""

    purpose = "webhooks"
    key_setting = "WEBHOOKS_SECRETS_KEY"


class SigningSecrets(models.Model):
    """A Standard Webhooks secret, and during a rotation the previous one, which stays valid
    (both signatures are sent) until `previous_secret_expires_at`.

    Encrypted, not hashed: signing needs the secret itself.
    """

    secret = SigningSecretField()
    previous_secret = SigningSecretField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def signing_secrets(self, now=None) -> list[str]:
        now = now or timezone.now()
        secrets = [self.secret]
        if (
            self.previous_secret
            and self.previous_secret_expires_at
            and (self.previous_secret_expires_at > now)
        ):
            secrets.append(self.previous_secret)
        return secrets


def _endpoint_id():
    return public_id("wh")


class WebhookEndpoint(SigningSecrets):
    public_id = models.CharField(max_length=40, unique=True, default=_endpoint_id, editable=False)
    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True)
    events = models.JSONField(default=list, help_text='Event types, or ["*"] for all.')
    enabled = models.BooleanField(default=True)
    # Start of the current run of failed attempts (none since the last success); an
    # endpoint that keeps failing for WEBHOOKS_DISABLE_AFTER_DAYS is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    # When the merchant was emailed about the automatic disabling (an outbox column: the
    # sweep sends what is due, so a crash delays the email but never loses it).
    disabled_notice_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "-created_at"])]

    def __str__(self):
        return self.url

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class MerchantWebhookSecret(SigningSecrets):
    """The merchant's default secret: signs what goes to a checkout's own `webhookUrl`.
    Made the first time it is needed."""

    merchant = models.OneToOneField(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="webhook_secret"
    )
    created_at = models.DateTimeField(auto_now_add=True)


def _event_id():
    return public_id("evt")


class WebhookEvent(models.Model):
    """Something that happened, once. `body` is the exact JSON sent on every attempt."""

    public_id = models.CharField(max_length=40, unique=True, default=_event_id, editable=False)
    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="webhook_events"
    )
    type = models.CharField(max_length=100)
    # What the event is about ("checkout:42"); with `type` it makes the event unique, so a
    # replayed state change can never announce itself twice.
    source = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "type"],
                condition=~Q(source=""),
                name="webhook_event_once_per_source",
            )
        ]

    def __str__(self):
        return f"{self.type} {self.public_id}"


def _delivery_id():
    return public_id("whd")


class WebhookDelivery(models.Model):
    """One event to one destination: an endpoint, or a checkout's own `webhookUrl`."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    public_id = models.CharField(max_length=40, unique=True, default=_delivery_id, editable=False)
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    url = models.URLField(max_length=2000, blank=True, help_text="Only without an endpoint.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    # Failed attempts since the delivery (re)started: picks the next backoff step.
    failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_delivery_due",
            ),
            models.Index(fields=["endpoint", "-created_at"]),
        ]

    def __str__(self):
        return self.public_id

    @property
    def target_url(self) -> str:
        return self.endpoint.url if self.endpoint_id else self.url


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, as the receiver answered it (or did not)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["number"]

    def __str__(self):
        return f"Attempt {self.number}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
