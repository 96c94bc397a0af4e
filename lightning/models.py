"""The single truth about payments (Invoice), its audit trail, the watcher's state, and
the dev node's own ledger (which stands in for a real node's database)."""

from django.db import models


class Invoice(models.Model):
    """A Lightning invoice this gateway asked its node for.

    Created only by `lightning.services.create_invoice`, after the node answered. Every
    state change is a conditional UPDATE (see services), so nothing pays twice.
    """

    class State(models.TextChoices):
        OPEN = "open"
        # A hold invoice whose payment the node holds: paid, not yet settled or canceled.
        ACCEPTED = "accepted"
        PAID = "paid"
        EXPIRED = "expired"
        CANCELED = "canceled"

    class CancelReason(models.TextChoices):
        MERCHANT = "merchant"  # cancel_hold_invoice
        HTLC_EXPIRY = "htlc_expiry"  # the held payment neared its HTLC expiry
        NODE = "node"  # the node canceled it (not us)
        # Not a cancel: a wallet of this gateway is paying it internally, and took it off
        # the node (lightning.services.take_off_node); it ends paid, not canceled.
        INTERNAL = "internal"

    payment_hash = models.CharField(max_length=64, unique=True)
    bolt11 = models.TextField()
    amount_msat = models.BigIntegerField()
    memo = models.CharField(max_length=640, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    amount_paid_msat = models.BigIntegerField(null=True, blank=True)
    settle_index = models.BigIntegerField(null=True, blank=True)
    preimage = models.CharField(max_length=64, blank=True)
    hold = models.BooleanField(default=False)
    backend = models.CharField(max_length=20)
    # Which app sold what this pays for ("checkout", "l402", "shopify"): only that app's
    # reactions (lightning.reactions) run when its state changes.
    purpose = models.CharField(max_length=20, blank=True)
    # Hold invoices: when the node reported the payment held, the lowest expiry height of
    # the held HTLCs (they must be settled or canceled before), and why one was canceled.
    accepted_at = models.DateTimeField(null=True, blank=True)
    htlc_expiry_height = models.BigIntegerField(null=True, blank=True)
    canceled_reason = models.CharField(max_length=20, blank=True, choices=CancelReason.choices)

    class Meta:
        indexes = [
            models.Index(fields=["state", "expires_at"]),
            # The hold invoices only (few, beside a table of millions): the watcher's hold
            # tracker looks for the open and accepted ones twice a second, and the
            # reconciliation every few minutes. On (state, expires_at) alone SQLite, once
            # ANALYZEd, reads the whole table backwards by id for the tracker's newest 50.
            models.Index(
                fields=["state"], condition=models.Q(hold=True), name="lightning_hold_invoices"
            ),
        ]

    def __str__(self):
        return f"{self.payment_hash[:12]}… {self.amount_msat} msat {self.state}"

    @property
    def amount_sats(self) -> int:
        return self.amount_msat // 1000

    @property
    def paid_late(self) -> bool:
        """Paid after its expiry (the payment is kept; the merchant decides what to do)."""
        return bool(self.paid_at and self.paid_at > self.expires_at)


class InvoiceTransition(models.Model):
    """One row per state change of an Invoice, written in the same transaction as the
    change: the audit trail that shows each invoice was paid (or expired) exactly once."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=10)
    to_state = models.CharField(max_length=10)
    at = models.DateTimeField()
    settle_index = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]


class PendingReaction(models.Model):
    """A reaction to an invoice's state change that failed (see lightning.reactions): the
    change was recorded without it, and it is retried until it succeeds."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    from_state = models.CharField(max_length=10)
    to_state = models.CharField(max_length=10)
    attempts = models.PositiveIntegerField(default=1)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["next_attempt_at"])]


class WatcherState(models.Model):
    """Where the watcher of one node is in that node's settlement stream, and who holds
    the lease that lets exactly one watcher subscribe."""

    node_key = models.CharField(max_length=100, primary_key=True)  # "<backend>:<pubkey>"
    settle_index = models.BigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    lease_holder = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # When the lease holder last renewed its lease or applied a batch: /api/health says
    # the watcher is down when this is too old.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)


class DevNodeInvoice(models.Model):
    """The dev node's own invoice ledger, as a real node keeps in its database.

    Not read by the gateway's services: they see it only through the backend interface.
    """

    class State(models.TextChoices):
        OPEN = "OPEN"
        ACCEPTED = "ACCEPTED"
        SETTLED = "SETTLED"
        CANCELED = "CANCELED"

    payment_hash = models.CharField(max_length=64, unique=True)
    preimage = models.CharField(max_length=64, blank=True)  # unknown for hold invoices
    payment_addr = models.CharField(max_length=64)
    bolt11 = models.TextField()
    amount_msat = models.BigIntegerField()
    memo = models.CharField(max_length=640, blank=True)
    hold = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    settled_at = models.DateTimeField(null=True, blank=True)
    amount_paid_msat = models.BigIntegerField(null=True, blank=True)
    settle_index = models.BigIntegerField(null=True, blank=True, unique=True)
    # While a hold invoice is ACCEPTED: the block height at which the payer's HTLC expires.
    htlc_expiry_height = models.BigIntegerField(null=True, blank=True)


class DevNodeCounter(models.Model):
    """The dev node's settle-index counter and its chain's block height. Settling locks this
    row, so settle indexes are handed out and committed strictly in order: a stream reader
    never skips one. `manage.py devnode_mine N` advances the block height."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_settle_index = models.BigIntegerField(default=0)
    block_height = models.BigIntegerField(default=100)
