"""Merchants' wallets: what the gateway holds for each merchant on its node (custody), and
every movement of it.

The balance is derived from immutable ledger rows; `Wallet.balance_msat` is a cached total,
changed only by `services` in the transaction that writes the row, with a conditional
UPDATE that refuses to go below zero (and a CHECK constraint behind it).
"""

from django.db import models
from django.db.models import Q

from checkout.models import public_id


def _wallet_id():
    return public_id("wal")


class Wallet(models.Model):
    class Owner(models.TextChoices):
        MERCHANT = "merchant", "The merchant's own"
        # A B2B customer's prepaid balance at the merchant (orders: purchases from balance).
        CUSTOMER = "customer", "A customer's balance at the merchant"

    public_id = models.CharField(max_length=40, unique=True, default=_wallet_id, editable=False)
    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.PROTECT, related_name="wallets"
    )
    owner = models.CharField(max_length=10, choices=Owner.choices, default=Owner.MERCHANT)
    name = models.CharField(max_length=200)
    # Settled incoming - successful outgoing (amount + fee) - reserved by payments in flight.
    balance_msat = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_msat__gte=0), name="wallet_balance_not_negative"
            ),
            # One wallet of its own per merchant (its customers' balances are more wallets).
            models.UniqueConstraint(
                fields=["merchant"],
                condition=Q(owner="merchant"),
                name="wallet_one_own_per_merchant",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.balance_msat // 1000} sats)"


class Payment(models.Model):
    """A payment into or out of a wallet, as LNbits keeps them: an incoming one follows its
    `lightning.Invoice`; an outgoing one is committed (pending, its amount and fee limit
    reserved) before the node is asked to pay, and ends succeeded or failed exactly as the
    node says."""

    class Direction(models.TextChoices):
        IN = "in"
        OUT = "out"

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCESS = "success"
        FAILED = "failed"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="payments")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    payment_hash = models.CharField(max_length=64)
    bolt11 = models.TextField()
    amount_msat = models.BigIntegerField()  # always positive; `direction` gives the sign
    fee_limit_msat = models.BigIntegerField(default=0)  # outgoing: reserved for fees
    fee_msat = models.BigIntegerField(default=0)  # outgoing: the routing fee paid
    preimage = models.CharField(max_length=64, blank=True)
    memo = models.CharField(max_length=640, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    # Called once when an incoming payment is paid (through the webhooks outbox).
    webhook = models.URLField(max_length=2000, blank=True)
    # What it paid for: the invoice's purpose ("checkout", "l402", "shopify"), empty for a
    # payment made through the wallet API. LNbits' `tag`.
    tag = models.CharField(max_length=20, blank=True)
    invoice = models.OneToOneField(
        "lightning.Invoice",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="wallet_payment",
        help_text="Incoming: the invoice it follows.",
    )
    # Outgoing: settled inside this gateway (the payee is another wallet), not by the node.
    internal = models.BooleanField(default=False)
    failure_reason = models.CharField(max_length=500, blank=True)
    # Outgoing: the sender's claim, as long as its call to the node may last. Until it runs
    # out, a node that has not heard of the payment may simply not have been asked yet.
    locked_until = models.DateTimeField(null=True, blank=True)
    # Outgoing: when the sweep may next ask the node about it (track_payment, never a send);
    # its conditional update keeps two sweeps from asking at once.
    next_check_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A retry or a double click pays once: one live payment per hash and wallet (a
            # failed one may be tried again).
            models.UniqueConstraint(
                fields=["wallet", "payment_hash"],
                condition=~Q(status="failed"),
                name="wallet_payment_hash_once",
            ),
        ]
        indexes = [
            models.Index(fields=["wallet", "-created_at"]),
            models.Index(fields=["payment_hash"]),
            # The sweep's outgoing payments in flight, oldest first: an index in id order,
            # or SQLite prefers reading every payment by id to sorting this handful.
            models.Index(
                fields=["id"],
                condition=Q(status="pending", direction="out"),
                name="wallet_payments_out_pending",
            ),
        ]

    def __str__(self):
        sign = "-" if self.direction == self.Direction.OUT else "+"
        return f"{sign}{self.amount_msat // 1000} sats {self.status} {self.payment_hash[:12]}…"

    @property
    def signed_amount_msat(self) -> int:
        return -self.amount_msat if self.direction == self.Direction.OUT else self.amount_msat


class LedgerEntry(models.Model):
    """One movement of a wallet's balance, never changed or deleted. Each kind happens at
    most once per payment (a constraint), so a replay can never move money twice."""

    class Kind(models.TextChoices):
        CREDIT = "credit", "Incoming payment settled"
        RESERVE = "reserve", "Outgoing payment reserved (amount + fee limit)"
        RELEASE = "release", "Outgoing payment failed: reservation released"
        SETTLE = "settle", "Outgoing payment succeeded: unused fee reserve returned"
        TRANSFER = "transfer", "Moved between two wallets of the gateway (no node involved)"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="entries")
    invoice = models.ForeignKey(
        "lightning.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    amount_msat = models.BigIntegerField()  # signed: what it adds to the balance
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["payment", "kind"], name="ledger_kind_once_per_payment")
        ]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("ledger entries are immutable")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("ledger entries are immutable")
