"""The agent registry: agents are their keys, and what they offer, ask for, agree to and are
rated for is recorded against that key.

Items that are Nostr-like events (capabilities, requests, agreements, attestations) carry a
stable 64-hex `event_id`: the id of the signed NIP-01 event the agent sent, or a sha256 of a
canonical serialization of the item when it sent none.
"""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from checkout.models import public_id


def _agent_id():
    return public_id("agt")


class Agent(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=_agent_id, editable=False)
    pubkey = models.CharField(max_length=64, unique=True, help_text="x-only secp256k1 key, hex")
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(max_length=1000, blank=True)
    # The merchant that acts for the agent with its API key. Set only by a proof of the key:
    # a signature of a challenge that this merchant asked for (see `services.verify_agent`).
    owner = models.ForeignKey(
        "checkout.Merchant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agents",
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive agents are hidden from discovery and cannot write."
    )
    is_verified = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["is_verified", "-created_at"])]

    def __str__(self):
        return self.name or self.pubkey[:16]


class Challenge(models.Model):
    """A random value the agent signs to prove it holds its key. Spent by the first verify
    attempt, whatever its outcome; kept a while after, so a replay is told apart from a
    challenge that never existed."""

    challenge = models.CharField(max_length=64, unique=True)
    pubkey = models.CharField(max_length=64)
    # The merchant that asked for it with its admin key: the key's signature makes that
    # merchant the agent's owner. Null: the proof verifies the agent and binds nobody.
    merchant = models.ForeignKey(
        "checkout.Merchant", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    spent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"])]


class SeenAuthEvent(models.Model):
    """NIP-98 events already used: an event is accepted once within its time window."""

    event_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"])]


class Capability(models.Model):
    """A service an agent offers; one per (agent, service_id), replaced when republished."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="capabilities")
    service_id = models.CharField(max_length=200)
    event_id = models.CharField(max_length=64, unique=True)
    content = models.TextField(max_length=5000, blank=True)
    categories = models.JSONField(default=list, blank=True)
    hashtags = models.JSONField(default=list, blank=True)
    # "|a|b|": the lists above as text that SQLite and PostgreSQL both filter with LIKE.
    categories_index = models.TextField(blank=True, editable=False)
    hashtags_index = models.TextField(blank=True, editable=False)
    price_sats = models.BigIntegerField(validators=[MinValueValidator(0)])
    l402_endpoint = models.CharField(max_length=2000, blank=True)
    target_url = models.CharField(max_length=2000, blank=True)
    # Taken down, not deleted: requests and payments that reached it stay counted.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "capabilities"
        constraints = [
            models.UniqueConstraint(fields=["agent", "service_id"], name="capability_per_service")
        ]

    def __str__(self):
        return f"{self.service_id} ({self.agent})"

    def save(self, *args, **kwargs):
        self.categories_index = index_terms(self.categories)
        self.hashtags_index = index_terms(self.hashtags)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {
                *kwargs["update_fields"],
                "categories_index",
                "hashtags_index",
            }
        super().save(*args, **kwargs)


def index_terms(terms: list[str]) -> str:
    """Terms (lower-case, without "|") as "|a|b|", so `|a|` finds exactly the term a."""
    return "|" + "|".join(terms) + "|" if terms else ""


class ServiceRequest(models.Model):
    """An agent asking a provider's capability for work."""

    event_id = models.CharField(max_length=64, unique=True)
    capability = models.ForeignKey(Capability, on_delete=models.PROTECT, related_name="requests")
    # The version of the capability that was asked for (republishing changes its event id).
    capability_event_id = models.CharField(max_length=64)
    provider = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="incoming_requests")
    requester = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="sent_requests")
    budget_sats = models.BigIntegerField(validators=[MinValueValidator(0)])
    parameters = models.JSONField(default=dict, blank=True)
    # Set by the service (not auto_now_add): the derived event id covers it.
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["provider", "-created_at"])]

    def __str__(self):
        return self.event_id[:16]


class Agreement(models.Model):
    """A provider accepting a request at a price: active until completed or cancelled."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    event_id = models.CharField(max_length=64, unique=True)
    request = models.OneToOneField(
        ServiceRequest, on_delete=models.PROTECT, related_name="agreement"
    )
    provider = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="provided")
    requester = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="commissioned")
    price_sats = models.BigIntegerField(validators=[MinValueValidator(0)])
    terms = models.TextField(max_length=5000, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    closed_by = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["provider", "status"]),
            models.Index(fields=["requester", "status"]),
        ]

    def __str__(self):
        return self.event_id[:16]


class Attestation(models.Model):
    """A party's rating of the other party to an agreement; one per party and agreement."""

    event_id = models.CharField(max_length=64, unique=True)
    agreement = models.ForeignKey(Agreement, on_delete=models.CASCADE, related_name="attestations")
    reviewer = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="given_attestations")
    subject = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="attestations")
    rating = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    content = models.TextField(max_length=5000, blank=True)
    proof = models.TextField(max_length=5000, blank=True)
    attestation_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agreement", "reviewer"], name="one_attestation_per_party"
            ),
            models.CheckConstraint(
                condition=models.Q(rating__gte=1, rating__lte=5), name="attestation_rating_1_5"
            ),
        ]

    def __str__(self):
        return self.event_id[:16]


class CapabilityPayment(models.Model):
    """A paid call that reached a capability outside an agreement (an L402 payment to its
    endpoint on this gateway). Recorded by `services.record_capability_payment`, once per
    payment hash; counted in the provider's stats."""

    capability = models.ForeignKey(Capability, on_delete=models.PROTECT, related_name="payments")
    payment_hash = models.CharField(max_length=64, unique=True)
    amount_sats = models.BigIntegerField(validators=[MinValueValidator(0)])
    created_at = models.DateTimeField(auto_now_add=True)
