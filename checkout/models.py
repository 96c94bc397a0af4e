"""Merchants, their API keys and their products."""

import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone


def public_id(prefix: str) -> str:
    """An opaque public id: a prefix that says what it is, then 20 random base62-ish chars."""
    return f"{prefix}_{secrets.token_urlsafe(15).replace('-', 'x').replace('_', 'y')}"


def _merchant_id():
    return public_id("mch")


def _product_id():
    return public_id("prod")


brand_colour_validator = RegexValidator(
    r"^#[0-9a-fA-F]{6}$", "A brand colour is a hex colour such as #f7931a."
)


class Merchant(models.Model):
    """A shop. Its settings (set on the merchant site) brand its buyer pages and say what
    it is told: `name` is the store name buyers see."""

    public_id = models.CharField(max_length=40, unique=True, default=_merchant_id, editable=False)
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, help_text="Where the gateway writes to the merchant.")
    created_at = models.DateTimeField(auto_now_add=True)
    # Each setting has a database default too: rows written by code that predates these
    # columns (a rolling deploy, an earlier migration's historical model) still insert.
    logo_url = models.URLField(blank=True, max_length=2000, default="", db_default="")
    brand_colour = models.CharField(
        max_length=7, blank=True, validators=[brand_colour_validator], default="", db_default=""
    )
    website_url = models.URLField(
        blank=True,
        max_length=2000,
        default="",
        db_default="",
        help_text="The shop; buyers are sent back here.",
    )
    support_email = models.EmailField(
        blank=True, default="", db_default="", help_text="Shown to buyers on receipts."
    )
    default_currency = models.CharField(max_length=3, default="SAT", db_default="SAT")
    default_expiry_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="How long a new checkout stays payable."
    )
    # Notification rules: an email to `email` on each sale, and a daily summary.
    notify_each_sale = models.BooleanField(default=False, db_default=False)
    notify_daily_summary = models.BooleanField(default=False, db_default=False)
    daily_summary_sent_on = models.DateField(null=True, blank=True)

    def __str__(self):
        return self.name


class MerchantUser(models.Model):
    """A Django user who administers one merchant (staff of that shop)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_link"
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="users")


class ApiKey(models.Model):
    """An API key, stored as its SHA-256 (keys are 256-bit random, so a fast hash is safe);
    the key itself is shown once, when it is made."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice key (create invoices, read)"
        ADMIN = "admin", "Admin key (everything)"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


class Product(models.Model):
    class Currency(models.TextChoices):
        SAT = "SAT"
        USD = "USD"
        EUR = "EUR"

    public_id = models.CharField(max_length=40, unique=True, default=_product_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="products")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=18, decimal_places=2)
    currency = models.CharField(max_length=3, choices=Currency.choices)
    image_url = models.URLField(blank=True, max_length=2000)
    active = models.BooleanField(default=True)
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.name


def _invoice_id():
    return public_id("inv")


class CheckoutInvoice(models.Model):
    """A merchant's checkout: what is sold, for how much, and the Lightning invoice that pays
    it. Its status is derived from the Lightning invoice (the single truth)."""

    class Status(models.TextChoices):
        UNPAID = "unpaid"
        PAID = "paid"
        EXPIRED = "expired"

    public_id = models.CharField(max_length=40, unique=True, default=_invoice_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="invoices")
    invoice = models.OneToOneField(
        "lightning.Invoice", on_delete=models.PROTECT, related_name="checkout"
    )
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    quantity = models.PositiveIntegerField(default=1)
    amount = models.DecimalField(max_digits=18, decimal_places=2)  # in `currency`
    currency = models.CharField(max_length=3, choices=Product.Currency.choices)
    sats_amount = models.BigIntegerField()
    # The exchange rate used (units of `currency` per BTC; empty for SAT) and its source.
    rate = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    rate_source = models.CharField(max_length=50, blank=True)
    description = models.CharField(max_length=640, blank=True)
    user_ref = models.CharField(max_length=128, blank=True)
    email = models.EmailField(blank=True)
    send_email = models.BooleanField(default=False)
    receipt_sent_at = models.DateTimeField(null=True, blank=True)
    redirect_url = models.URLField(max_length=2000, blank=True)
    # Also gets this checkout's webhook events, signed with the merchant's default secret.
    webhook_url = models.URLField(max_length=2000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Where a refund is paid by itself: the buyer's Lightning address or LNURL-pay.
    refund_address = models.CharField(max_length=2000, blank=True)
    idempotency_key = models.CharField(max_length=256, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The receipt outbox: set in the transaction that marks the invoice paid (when a receipt
    # was asked for), so a crash before the email goes out cannot lose it.
    receipt_due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"], name="checkout_invoice_idempotency"
            )
        ]
        indexes = [
            models.Index(fields=["merchant", "-created_at"]),
            models.Index(
                fields=["receipt_due_at"],
                condition=models.Q(receipt_due_at__isnull=False, receipt_sent_at__isnull=True),
                name="checkout_receipts_due",
            ),
        ]

    def __str__(self):
        return self.public_id

    @property
    def status(self) -> str:
        state = self.invoice.state
        if state == "paid":
            return self.Status.PAID
        if state == "open" and self.invoice.expires_at > timezone.now():
            return self.Status.UNPAID
        return self.Status.EXPIRED


class IdempotencyKey(models.Model):
    """A merchant's `Idempotency-Key`, reserved (and committed) before the node is asked for
    an invoice, so of concurrent requests with one key only the first mints an invoice (the
    others get a 409 at once). `checkout_invoice` is set when the first request finished."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=256)
    request_hash = models.CharField(max_length=64)
    checkout_invoice = models.OneToOneField(
        CheckoutInvoice, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "key"], name="checkout_idempotency_key")
        ]
