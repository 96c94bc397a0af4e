"""Refunds: money a merchant gives back for a payment it received, paid out exactly once
from the merchant's wallet (an outgoing payment of `wallets`)."""

import secrets

from django.db import models
from django.db.models import Q

from checkout.models import public_id


def _refund_id():
    return public_id("ref")


def claim_token() -> str:
    """The secret of a refund link: 256 random bits, hex (it is also the LNURL `k1`)."""
    return secrets.token_hex(32)


# The states in which a refund holds part of what was paid (the rest may be refunded).
HOLDING = ("pending", "claimable", "paying", "completed")


class Refund(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"  # to be paid to the refund address (fetching its invoice)
        CLAIMABLE = "claimable"  # waiting for the buyer to claim the link
        PAYING = "paying"  # the payout is (being) sent
        COMPLETED = "completed"
        FAILED = "failed"  # not paid, and it will not be (the amount is free again)
        EXPIRED = "expired"  # the link ran out unclaimed; the merchant may reissue it

    class Source(models.TextChoices):
        CHECKOUT = "checkout"
        SHOPIFY = "shopify"
        L402 = "l402"
        ORDER = "order"  # a reseller's order (orders app) that could not be delivered
        WALLET = "wallet"

    class RateChoice(models.TextChoices):
        PAYMENT = "payment", "The rate at payment time"
        CURRENT = "current", "Today's rate"

    class Purpose(models.TextChoices):
        REFUND = "refund", "Money given back"
        # What an order delivers: sats the buyer claims with LNURL-withdraw (the Bitrefill
        # seed's thorInfo). Paid out the same way; not a refund of the payment.
        DELIVERY = "delivery", "Sats delivered by an order"

    public_id = models.CharField(max_length=40, unique=True, default=_refund_id, editable=False)
    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.PROTECT, related_name="refunds"
    )
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.REFUND)
    # The incoming payment refunded: its amount caps the sum of the refunds that hold.
    payment = models.ForeignKey("wallets.Payment", on_delete=models.PROTECT, related_name="refunds")
    source = models.CharField(max_length=10, choices=Source.choices)
    source_id = models.CharField(
        max_length=64, help_text="The public id (or payment hash) of what was refunded."
    )
    amount_msat = models.BigIntegerField()
    # What the merchant asked for, when it named a fiat amount, and the rate it was converted at.
    fiat_amount = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, default="SAT")
    rate = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    rate_choice = models.CharField(max_length=10, choices=RateChoice.choices, blank=True)
    rate_source = models.CharField(max_length=50, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    state = models.CharField(max_length=10, choices=State.choices)
    failure_reason = models.CharField(max_length=500, blank=True)
    # Paid to this Lightning address (LUD-16) or LNURL-pay by the gateway, or else...
    refund_address = models.CharField(max_length=2000, blank=True)
    # ...claimed by the buyer through the refund link: single use, expiring, reissuable.
    claim_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    # The invoice paid out (fetched from the address, or handed in by the buyer).
    bolt11 = models.TextField(blank=True)
    payment_hash = models.CharField(max_length=64, blank=True)
    payout = models.ForeignKey(
        "wallets.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    attempts = models.PositiveIntegerField(default=0)
    # Pending: when the address may be tried again; paying: the sender's lease.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The email outbox: set in the transaction that makes an email due.
    link_email_due_at = models.DateTimeField(null=True, blank=True)
    link_emailed_at = models.DateTimeField(null=True, blank=True)
    receipt_due_at = models.DateTimeField(null=True, blank=True)
    receipt_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_msat__gt=0), name="refund_amount_positive"),
        ]
        indexes = [
            models.Index(fields=["merchant", "-created_at"]),
            models.Index(fields=["payment_hash"]),
            models.Index(
                fields=["id"],
                condition=Q(state__in=["pending", "claimable", "paying"]),
                name="refunds_open",
            ),
        ]

    def __str__(self):
        return f"{self.public_id} ({self.amount_msat // 1000} sats, {self.state})"

    @property
    def amount_sats(self) -> int:
        return self.amount_msat // 1000
