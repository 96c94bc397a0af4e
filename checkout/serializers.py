"""The JSON shapes of the checkout API (camelCase), and the validation of what comes in.

Request fields are strict about JSON types: a string where a number belongs (or the
reverse) is a 400, not a silent conversion.
"""

import json
from datetime import UTC
from decimal import Decimal

from django.conf import settings
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from config.problems import Problem
from config.serializers import StrictJsonTypes
from webhooks.serializers import WebhookUrlField

from .models import CheckoutInvoice, Product

MAX_METADATA_BYTES = 8192
MAX_QUANTITY = 10_000
CURRENCIES = Product.Currency.choices
SAT_ONLY = [(code, label) for code, label in CURRENCIES if code == Product.Currency.SAT]
FIAT = [(code, label) for code, label in CURRENCIES if code != Product.Currency.SAT]


class MoneyField(serializers.DecimalField):
    """A positive amount as a decimal string ("12.50"; a JSON number is refused, see
    config.serializers), shown with two decimals, or as a whole number for SAT."""

    def __init__(self, **kwargs):
        super().__init__(
            max_digits=18,
            decimal_places=2,
            min_value=Decimal("0.01"),
            coerce_to_string=True,
            **kwargs,
        )

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "string",
        "format": "decimal",
        "pattern": "^0*[1-9][0-9]{0,15}$",
        "description": "A whole number of sats, as a string.",
    }
)
class WholeSatsField(MoneyField):
    """For the OpenAPI document: a SAT amount is a whole number."""


def format_amount(amount: Decimal, currency: str) -> str:
    return str(int(amount)) if currency == Product.Currency.SAT else f"{amount:.2f}"


class HttpUrlField(serializers.URLField):
    def __init__(self, **kwargs):
        super().__init__(max_length=2000, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if value and not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Must be an http or https URL.")
        return value


def _check_sat_whole(price, currency, field, partial=False):
    """On a PATCH (`partial`) the refusal has its own slug: the currency may be the stored
    one, which no schema of the body can know (see tests/test_api_contract.py)."""
    if currency == Product.Currency.SAT and price is not None and price != int(price):
        message = "A SAT amount must be a whole number."
        if partial:
            raise Problem(400, "sat_amount_not_whole", f"{field}: {message}", {field: [message]})
        raise serializers.ValidationError({field: [message]})


class RejectUnknownFields:
    """A typo in a field name is an error, not a silently ignored field. `refused_fields`
    says why a field known elsewhere is not taken here."""

    refused_fields: dict[str, str] = {}
    rejects_unknown_fields = True  # the OpenAPI document says additionalProperties: false

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [self.refused_fields.get(name, "Unknown field.")] for name in unknown}
                )
        return super().validate(attrs)


# --- Products --------------------------------------------------------------------------


class ProductSerializer(StrictJsonTypes, RejectUnknownFields, serializers.ModelSerializer):
    productId = serializers.CharField(source="public_id", read_only=True)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=5000, allow_blank=True, required=False)
    price = MoneyField(
        help_text="A decimal string with at most 2 decimals, greater than 0; for SAT a "
        "whole number of sats."
    )
    currency = serializers.ChoiceField(choices=CURRENCIES)
    imageUrl = HttpUrlField(source="image_url", allow_blank=True, required=False)
    active = serializers.BooleanField(
        required=False, help_text="Inactive products cannot be bought."
    )
    paymentLink = serializers.SerializerMethodField(
        help_text="A public GET URL that opens a fresh checkout of this product (for an "
        "email, a post or a button); null while the product is inactive."
    )
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = Product
        fields = [
            "productId",
            "name",
            "description",
            "price",
            "currency",
            "imageUrl",
            "active",
            "paymentLink",
            "createdAt",
            "updatedAt",
        ]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_paymentLink(self, product) -> str | None:
        from .links import payment_link  # links -> pages -> these serializers

        return payment_link(product)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        currency = attrs.get("currency", getattr(self.instance, "currency", None))
        price = attrs.get("price", getattr(self.instance, "price", None))
        _check_sat_whole(price, currency, "price", partial=self.partial)
        return attrs

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["price"] = format_amount(instance.price, instance.currency)
        return data

    # Writes go through checkout.services, not the serializer.
    def create(self, validated_data):
        raise NotImplementedError

    def update(self, instance, validated_data):
        raise NotImplementedError


# The two shapes of a product, by currency, for the OpenAPI document (a oneOf): validation
# is the ProductSerializer's.
class ProductInSatsSerializer(ProductSerializer):
    """A product priced in sats (a whole number)."""

    price = WholeSatsField()
    currency = serializers.ChoiceField(choices=SAT_ONLY)


class ProductInFiatSerializer(ProductSerializer):
    """A product priced in a fiat currency (at most 2 decimals)."""

    currency = serializers.ChoiceField(choices=FIAT)


PRODUCT_REQUEST = PolymorphicProxySerializer(
    component_name="ProductWrite",
    serializers=[ProductInSatsSerializer, ProductInFiatSerializer],
    resource_type_field_name=None,
)


# --- Checkout invoices -----------------------------------------------------------------


class CheckoutOptionsMixin(serializers.Serializer):
    """The optional fields a buyer may give, on both the merchant's and the public create."""

    # sendEmail: true needs an email.
    openapi_request_rules = {
        "anyOf": [
            {"properties": {"sendEmail": {"not": {"enum": [True]}}}},
            {"required": ["email"], "properties": {"email": {"minLength": 1}}},
        ]
    }

    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    sendEmail = serializers.BooleanField(
        source="send_email",
        required=False,
        default=False,
        help_text="Email a receipt to `email` once the invoice is paid.",
    )

    refundAddress = serializers.CharField(
        source="refund_address",
        max_length=2000,
        allow_blank=True,
        required=False,
        help_text="The buyer's Lightning address (user@domain) or LNURL-pay: a refund of "
        "this checkout is paid there by itself.",
    )

    def validate_refundAddress(self, value):  # noqa: N802 (DRF: validate_<field name>)
        from refunds.lnurl import check_address

        return check_address(value) if value else value

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs.get("send_email") and not attrs.get("email"):
            raise serializers.ValidationError({"email": ["Needed when sendEmail is true."]})
        return attrs


class CheckoutInvoiceCreateSerializer(StrictJsonTypes, RejectUnknownFields, CheckoutOptionsMixin):
    userRef = serializers.CharField(
        source="user_ref",
        max_length=128,
        allow_blank=True,
        required=False,
        help_text="Your reference for this checkout (at most 128 characters), echoed back.",
    )
    productId = serializers.CharField(
        source="product_id",
        max_length=40,
        required=False,
        help_text="Sell one of your products (give this, or amount and currency).",
    )
    quantity = serializers.IntegerField(
        min_value=1, max_value=MAX_QUANTITY, required=False, help_text="With productId."
    )
    amount = MoneyField(
        required=False,
        help_text="A decimal string with at most 2 decimals, greater than 0 (SAT: a whole number).",
    )
    currency = serializers.ChoiceField(choices=CURRENCIES, required=False)
    description = serializers.CharField(
        max_length=500,
        allow_blank=True,
        required=False,
        help_text="Shown on the checkout page and in the wallet (default: the product name).",
    )
    redirectUrl = HttpUrlField(
        source="redirect_url",
        allow_blank=True,
        required=False,
        help_text="Where the checkout page sends the buyer after payment.",
    )
    webhookUrl = WebhookUrlField(
        source="webhook_url",
        allow_blank=True,
        required=False,
        help_text="Also send this invoice's webhook events here, signed with your default "
        "webhook secret (GET /api/webhooks/default-secret).",
    )
    expiresInSeconds = serializers.IntegerField(
        source="expires_in_seconds",
        min_value=60,
        max_value=86400,
        required=False,
        default=900,
        help_text="The checkout and its BOLT11 invoice expire after this many seconds.",
    )
    metadata = serializers.DictField(
        required=False,
        help_text=f"Any JSON object of yours (at most {MAX_METADATA_BYTES} bytes), echoed back.",
    )

    def validate_metadata(self, value):
        if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
            raise serializers.ValidationError(f"At most {MAX_METADATA_BYTES} bytes of JSON.")
        return value

    def validate(self, attrs):
        attrs = super().validate(attrs)
        by_product = "product_id" in attrs
        by_amount = "amount" in attrs or "currency" in attrs
        if by_product and by_amount:
            raise serializers.ValidationError(
                "Give either productId (and quantity) or amount and currency, not both."
            )
        if not by_product and not by_amount:
            raise serializers.ValidationError(
                "Give either productId (and quantity) or amount and currency."
            )
        if by_amount:
            missing = [name for name in ("amount", "currency") if name not in attrs]
            if missing:
                raise serializers.ValidationError(
                    {
                        name: ["Needed with " + ("currency." if name == "amount" else "amount.")]
                        for name in missing
                    }
                )
            if "quantity" in attrs:
                raise serializers.ValidationError({"quantity": ["Only with productId."]})
            _check_sat_whole(attrs["amount"], attrs["currency"], "amount")
        return attrs


# The two shapes of a create, for the OpenAPI document (a oneOf): validation is the
# CheckoutInvoiceCreateSerializer's.
class CheckoutInvoiceByProductSerializer(CheckoutInvoiceCreateSerializer):
    """A checkout of one of your products."""

    amount = None
    currency = None
    productId = serializers.CharField(
        source="product_id", max_length=40, help_text="The product sold (prod_...)."
    )


class CheckoutInvoiceInSatsSerializer(CheckoutInvoiceCreateSerializer):
    """A checkout of an amount of sats."""

    productId = None
    quantity = None
    amount = WholeSatsField()
    currency = serializers.ChoiceField(choices=SAT_ONLY)


class CheckoutInvoiceInFiatSerializer(CheckoutInvoiceCreateSerializer):
    """A checkout of an amount in a fiat currency, paid in sats at the current rate."""

    productId = None
    quantity = None
    amount = MoneyField(help_text="A decimal string with at most 2 decimals, greater than 0.")
    currency = serializers.ChoiceField(choices=FIAT)


CHECKOUT_INVOICE_REQUEST = PolymorphicProxySerializer(
    component_name="CheckoutInvoiceCreate",
    serializers=[
        CheckoutInvoiceByProductSerializer,
        CheckoutInvoiceInSatsSerializer,
        CheckoutInvoiceInFiatSerializer,
    ],
    resource_type_field_name=None,
)


MERCHANT_ONLY = (
    "Only the merchant sets this, with its API key (POST /api/checkout/invoices): a "
    "checkout started without a key takes quantity, email and sendEmail."
)


class ProductCheckoutSerializer(StrictJsonTypes, RejectUnknownFields, CheckoutOptionsMixin):
    """What a buyer may say when a storefront starts a checkout of a product without a key:
    how many, and where to send the receipt. What the merchant's systems trust (userRef,
    metadata, the webhook and redirect URLs, the price, description and expiry) anyone could
    set here, so only the merchant's create takes it."""

    refused_fields = dict.fromkeys(
        [
            "userRef",
            "metadata",
            "webhookUrl",
            "redirectUrl",
            "description",
            "expiresInSeconds",
            "productId",
            "amount",
            "currency",
        ],
        MERCHANT_ONLY,
    )

    quantity = serializers.IntegerField(
        min_value=1, max_value=MAX_QUANTITY, required=False, default=1
    )


class CheckoutInvoiceSerializer(serializers.ModelSerializer):
    invoiceId = serializers.CharField(source="public_id")
    status = serializers.ChoiceField(choices=CheckoutInvoice.Status.choices)
    amount = serializers.SerializerMethodField(
        help_text="In `currency`: a decimal string (a whole number for SAT)."
    )
    currency = serializers.ChoiceField(choices=CURRENCIES)
    satsAmount = serializers.IntegerField(source="sats_amount")
    lightningInvoice = serializers.CharField(source="invoice.bolt11", help_text="BOLT11.")
    paymentHash = serializers.CharField(source="invoice.payment_hash")
    checkoutUrl = serializers.SerializerMethodField(help_text="The hosted checkout page.")
    expiresAt = serializers.DateTimeField(source="invoice.expires_at")
    createdAt = serializers.DateTimeField(source="created_at")
    paidAt = serializers.DateTimeField(source="invoice.paid_at", allow_null=True)
    productId = serializers.SerializerMethodField()
    quantity = serializers.IntegerField()
    description = serializers.CharField()
    userRef = serializers.SerializerMethodField()
    email = serializers.SerializerMethodField()
    sendEmail = serializers.BooleanField(source="send_email")
    receiptSentAt = serializers.DateTimeField(source="receipt_sent_at", allow_null=True)
    redirectUrl = serializers.SerializerMethodField()
    webhookUrl = serializers.URLField(source="webhook_url", allow_null=True)
    metadata = serializers.DictField()
    rate = serializers.SerializerMethodField(
        help_text="The exchange rate used, in `currency` per BTC (null for SAT)."
    )
    rateSource = serializers.SerializerMethodField()
    refundAddress = serializers.CharField(source="refund_address", allow_null=True)

    class Meta:
        model = CheckoutInvoice
        fields = [
            "invoiceId",
            "status",
            "amount",
            "currency",
            "satsAmount",
            "lightningInvoice",
            "paymentHash",
            "checkoutUrl",
            "expiresAt",
            "createdAt",
            "paidAt",
            "productId",
            "quantity",
            "description",
            "userRef",
            "email",
            "sendEmail",
            "receiptSentAt",
            "redirectUrl",
            "webhookUrl",
            "metadata",
            "rate",
            "rateSource",
            "refundAddress",
        ]

    def to_representation(self, obj):
        """Built directly: this is on every create and read, and DRF's field-by-field
        rendering (a deep copy of 22 fields per object) cost more than the rest of a read.
        The declared fields above describe the same shape for the OpenAPI document."""
        invoice = obj.invoice
        return {
            "invoiceId": obj.public_id,
            "status": obj.status,
            "amount": format_amount(obj.amount, obj.currency),
            "currency": obj.currency,
            "satsAmount": obj.sats_amount,
            "lightningInvoice": invoice.bolt11,
            "paymentHash": invoice.payment_hash,
            "checkoutUrl": self.get_checkoutUrl(obj),
            "expiresAt": _iso(invoice.expires_at),
            "createdAt": _iso(obj.created_at),
            "paidAt": _iso(invoice.paid_at),
            "productId": self.get_productId(obj),
            "quantity": obj.quantity,
            "description": obj.description,
            "userRef": obj.user_ref or None,
            "email": obj.email or None,
            "sendEmail": obj.send_email,
            "receiptSentAt": _iso(obj.receipt_sent_at),
            "redirectUrl": obj.redirect_url or None,
            "webhookUrl": obj.webhook_url or None,
            "metadata": obj.metadata,
            "rate": self.get_rate(obj),
            "rateSource": obj.rate_source or None,
            "refundAddress": obj.refund_address or None,
        }

    def get_amount(self, obj) -> str:
        return format_amount(obj.amount, obj.currency)

    def get_checkoutUrl(self, obj) -> str:
        return f"{settings.PUBLIC_BASE_URL}/checkout/{obj.public_id}"

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_productId(self, obj):
        return obj.product.public_id if obj.product_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_userRef(self, obj):
        return obj.user_ref or None

    @extend_schema_field(serializers.EmailField(allow_null=True))
    def get_email(self, obj):
        return obj.email or None

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_redirectUrl(self, obj):
        return obj.redirect_url or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_rate(self, obj):
        return None if obj.rate is None else f"{obj.rate.normalize():f}"

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_rateSource(self, obj):
        return obj.rate_source or None


def _iso(value):
    """A UTC timestamp as DRF renders it: ISO 8601 with a Z."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
