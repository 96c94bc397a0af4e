"""Orders with the lifecycle of the Bitrefill seed: what a merchant's B2B customers (resellers)
buy through the Bitrefill-compatible API, its payment, and what it delivers."""

import secrets

from django.db import models
from django.db.models import Q

from checkout.models import public_id


def _customer_id():
    return public_id("cus")


def _order_id():
    return secrets.token_hex(12)  # 24 hex, as the seed's ids


class Customer(models.Model):
    """A reseller of a merchant: calls /v1 with HTTP Basic (`api_key`:`secret`); the secret
    is stored as its SHA-256 (256 random bits) and shown once. Its prepaid balance is a
    wallet of the merchant's gateway (wallets.Wallet, owner customer)."""

    public_id = models.CharField(max_length=40, unique=True, default=_customer_id, editable=False)
    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="customers"
    )
    name = models.CharField(max_length=200)
    api_key = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=64)
    wallet = models.OneToOneField(
        "wallets.Wallet", on_delete=models.PROTECT, related_name="customer"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.api_key[:8]}…)"


class Operator(models.Model):
    """What customers can buy: the seed's `operator`. Ranged (any value in min..max by
    step, such as a top-up) or packages (fixed values). Its price in sats is
    `value * price_rate` (converted at today's rate for a fiat currency) + `purchase_fee_sats`."""

    class Currency(models.TextChoices):
        SAT = "SAT"
        USD = "USD"
        EUR = "EUR"

    class Delivery(models.TextChoices):
        NONE = "none", "Nothing (the merchant fulfils it)"
        CODE = "code", "A code from the stock the merchant uploads"
        LINK = "link", "A link"
        # Sats (the value, a SAT product) the buyer claims with LNURL-withdraw: the seed's
        # thorInfo for Lightning products such as lightning-recharge.
        LNURL_WITHDRAW = "lnurl_withdraw", "Sats claimed with LNURL-withdraw"

    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="operators"
    )
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.SAT)
    ranged = models.BooleanField(default=False)
    range_min = models.BigIntegerField(null=True, blank=True)
    range_max = models.BigIntegerField(null=True, blank=True)
    range_step = models.BigIntegerField(default=1)
    packages = models.JSONField(
        default=list, blank=True, help_text='Fixed values, as strings: ["10", "25", "50"].'
    )
    price_rate = models.DecimalField(max_digits=12, decimal_places=6, default=1)
    purchase_fee_sats = models.BigIntegerField(default=0)
    delivery = models.CharField(max_length=20, choices=Delivery.choices, default=Delivery.NONE)
    delivery_link = models.URLField(max_length=2000, blank=True)
    instructions = models.CharField(max_length=500, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "slug"], name="operator_slug_per_merchant")
        ]

    def __str__(self):
        return f"{self.name} ({self.slug})"


class StockCode(models.Model):
    """A code the merchant uploaded for an operator that delivers codes; given to one order."""

    operator = models.ForeignKey(Operator, on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(max_length=500)
    order = models.OneToOneField(
        "orders.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="code"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["operator"], condition=Q(order__isnull=True), name="codes_free")
        ]


class Order(models.Model):
    class Status(models.TextChoices):
        UNPAID = "unpaid"
        PAYMENT_PENDING = "payment_pending"  # a purchase from balance, being paid
        PAID = "paid"  # paid, being delivered
        SUCCESS = "success"  # delivered
        FAILED = "failed"  # paid, not delivered: refunded next
        REFUNDED = "refunded"
        EXPIRED = "expired"  # never paid

    class PaymentMethod(models.TextChoices):
        LIGHTNING = "lightning"
        BALANCE = "balance"

    public_id = models.CharField(max_length=24, unique=True, default=_order_id, editable=False)
    merchant = models.ForeignKey("checkout.Merchant", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="orders")
    value_package = models.CharField(max_length=40)
    email = models.EmailField(max_length=254, blank=True)
    send_email = models.BooleanField(default=True)
    user_ref = models.CharField(max_length=128, blank=True)
    webhook_url = models.URLField(max_length=2000, blank=True)
    refund_address = models.CharField(max_length=2000, blank=True)
    payment_method = models.CharField(max_length=10, choices=PaymentMethod.choices)
    status = models.CharField(max_length=20, choices=Status.choices)
    price_sats = models.BigIntegerField()
    invoice = models.OneToOneField(
        "lightning.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="order"
    )
    # What paid it, in the merchant's wallet: the invoice's payment, or the transfer's credit.
    payment = models.ForeignKey(
        "wallets.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    delivery = models.JSONField(default=dict, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    receipt_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-created_at"]),
            models.Index(
                fields=["id"],
                condition=Q(status__in=["payment_pending", "paid"]),
                name="orders_to_deliver",
            ),
        ]

    def __str__(self):
        return self.public_id
