"""Shopify stores, their local catalog copy, and the Lightning-paid orders sold from it."""

from django.core.validators import RegexValidator
from django.db import models

from checkout.models import public_id
from l402.models import StoredToken

from .fields import EncryptedTextField

shop_domain_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$",
    "Must be the shop's *.myshopify.com domain, e.g. my-shop.myshopify.com.",
)
api_version_validator = RegexValidator(
    r"^\d{4}-(01|04|07|10)$", "Must be a Shopify API version such as 2025-01."
)


class ShopifyStore(models.Model):
    """A merchant's Shopify shop, sold through its public catalog at /api/shopify/<slug>."""

    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="shopify_stores"
    )
    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    shop_domain = models.CharField(max_length=255, validators=[shop_domain_validator])
    access_token = EncryptedTextField(help_text="Admin API access token (stored encrypted).")
    api_version = models.CharField(
        max_length=10, default="2025-01", validators=[api_version_validator]
    )
    webhook_secret = EncryptedTextField(
        blank=True, help_text="The secret Shopify signs its webhooks with (stored encrypted)."
    )
    # Shipping: one flat domestic rate, optionally free above a threshold.
    domestic_country = models.CharField(max_length=2, default="US")
    domestic_shipping_usd = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    domestic_only = models.BooleanField(default=True)
    free_shipping_enabled = models.BooleanField(default=False)
    free_shipping_threshold_usd = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True
    )
    active = models.BooleanField(default=True)
    catalog_synced_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.slug


class ShopifyProduct(models.Model):
    store = models.ForeignKey(ShopifyStore, on_delete=models.CASCADE, related_name="products")
    product_id = models.BigIntegerField(help_text="Shopify's numeric product id.")
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    image_url = models.URLField(max_length=2000, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "product_id"], name="shopify_product_once")
        ]

    def __str__(self):
        return self.title


class ShopifyVariant(models.Model):
    store = models.ForeignKey(ShopifyStore, on_delete=models.CASCADE, related_name="variants")
    product = models.ForeignKey(ShopifyProduct, on_delete=models.CASCADE, related_name="variants")
    variant_id = models.BigIntegerField(help_text="Shopify's numeric variant id.")
    title = models.CharField(max_length=255)
    price_usd = models.DecimalField(max_digits=12, decimal_places=2)
    available = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "variant_id"], name="shopify_variant_once")
        ]

    def __str__(self):
        return f"{self.product.title} / {self.title}"


def _order_id():
    return public_id("shpfy")


class ShopifyOrder(StoredToken):
    """A cart bought with Lightning. Every state change is a conditional UPDATE."""

    class Status(models.TextChoices):
        AWAITING_PAYMENT = "AwaitingPayment"
        AWAITING_DETAILS = "AwaitingDetails"  # paid; waiting for the claim (email, address)
        PROCESSING = "Processing"  # claimed; being created in Shopify
        PLACED = "Placed"  # exists in Shopify, marked paid
        SHIPPED = "Shipped"
        EXPIRED = "Expired"  # never paid
        NEEDS_REFUND = "NeedsRefund"  # paid, but Shopify refused the order

    public_id = models.CharField(max_length=40, unique=True, default=_order_id, editable=False)
    store = models.ForeignKey(ShopifyStore, on_delete=models.PROTECT, related_name="orders")
    invoice = models.OneToOneField(
        "lightning.Invoice", on_delete=models.PROTECT, related_name="shopify_order"
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.AWAITING_PAYMENT
    )
    subtotal_usd = models.DecimalField(max_digits=12, decimal_places=2)
    shipping_usd = models.DecimalField(max_digits=12, decimal_places=2)
    total_usd = models.DecimalField(max_digits=12, decimal_places=2)
    amount_sats = models.BigIntegerField()
    rate = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    # sha256 of the claim token (the token itself is derived from a server secret and the
    # order id, so it can be handed out again to the payer, but is never stored).
    claim_token_hash = models.CharField(max_length=64, unique=True)
    paid_sats = models.BigIntegerField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    email = models.EmailField(max_length=200, blank=True)
    shipping_address = models.JSONField(default=dict, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    shopify_order_gid = models.CharField(max_length=100, blank=True)
    shopify_order_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    shopify_order_number = models.CharField(max_length=50, blank=True)
    placed_at = models.DateTimeField(null=True, blank=True)
    refund_reason = models.TextField(blank=True)
    merchant_notified_at = models.DateTimeField(null=True, blank=True)
    tracking_number = models.CharField(max_length=255, blank=True)
    tracking_carrier = models.CharField(max_length=255, blank=True)
    tracking_url = models.URLField(max_length=2000, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["store", "status"]),
            models.Index(
                fields=["status"],
                condition=models.Q(status="NeedsRefund", merchant_notified_at__isnull=True),
                name="shopify_refund_notice_due",
            ),
        ]

    def __str__(self):
        return self.public_id


class ShopifyOrderLine(models.Model):
    """What was bought, copied from the catalog at checkout (the catalog may change)."""

    order = models.ForeignKey(ShopifyOrder, on_delete=models.CASCADE, related_name="lines")
    variant_id = models.BigIntegerField()
    title = models.CharField(max_length=520)
    quantity = models.PositiveSmallIntegerField()
    unit_price_usd = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]


class ShopifyOrderPush(models.Model):
    """The outbox row that gets one order created in Shopify: written in the claim's
    transaction, one per order (so one Shopify order per payment), leased by the worker
    that sends it and retried until Shopify answers."""

    class State(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        REFUSED = "refused"  # Shopify said no (out of stock): the order needs a refund

    order = models.OneToOneField(ShopifyOrder, on_delete=models.CASCADE, related_name="push")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state="pending"),
                name="shopify_push_due",
            )
        ]
