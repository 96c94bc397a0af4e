"""The JSON of the Bitrefill-compatible API (the seed's field names, snake_case ones
included), and of the merchant's API for customers, operators and stock."""

import re
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from checkout.serializers import RejectUnknownFields
from config.problems import Problem
from config.serializers import StrictJsonTypes
from webhooks.serializers import WebhookUrlField

from .models import Operator, Order

PAYMENT_METHODS_REFUSED = (
    "Only lightning is accepted: this gateway is paid with Lightning ('lightning'), or from "
    "your account balance (POST /v1/purchase)."
)


VALUE_PATTERN = r"^0*[1-9][0-9]{0,17}(\.[0-9]{1,8})?$"


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "pattern": VALUE_PATTERN},
            {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
        ]
    }
)
class ValuePackageField(serializers.Field):
    """A positive value: the seed sends "2000000" (a string); an integer is taken too."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int)):
            raise serializers.ValidationError('A value as a string ("2000000") or an integer.')
        text = str(data)
        if not re.fullmatch(VALUE_PATTERN, text):
            raise serializers.ValidationError(
                'A positive number: digits, at most 8 decimals ("2000000", "10.50").'
            )
        return text

    def to_representation(self, value):
        return value


class PurchaseSerializer(StrictJsonTypes, RejectUnknownFields, serializers.Serializer):
    operatorSlug = serializers.SlugField(source="operator_slug", max_length=100)
    valuePackage = ValuePackageField(source="value_package")
    # Taken as given and echoed back, as the seed's examples send a placeholder
    # ("[email protected]"); receipts and refund links go only to a valid address.
    email = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=254,
        help_text="For receipts: emailed only when it is a valid address.",
    )
    sendEmail = serializers.BooleanField(source="send_email", required=False, default=True)
    webhook_url = WebhookUrlField(required=False, allow_blank=True)
    userRef = serializers.CharField(
        source="user_ref", max_length=128, required=False, allow_blank=True, allow_null=True
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs.get("user_ref") is None:
            attrs["user_ref"] = ""
        return attrs


class OrderSerializer(PurchaseSerializer):
    paymentMethod = serializers.CharField(source="payment_method", max_length=40)
    refund_address = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="A Lightning address or LNURL-pay: a failed order is refunded there.",
    )

    def validate_paymentMethod(self, value):  # noqa: N802 (DRF: validate_<field name>)
        if value != "lightning":
            raise serializers.ValidationError(PAYMENT_METHODS_REFUSED)
        return value

    def validate_refund_address(self, value):
        from refunds.lnurl import check_address

        return check_address(value, "refund_address") if value else value


class TopUpSerializer(StrictJsonTypes, RejectUnknownFields, serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, help_text="Sats to add to the balance.")


class CustomerCreateSerializer(StrictJsonTypes, RejectUnknownFields, serializers.Serializer):
    name = serializers.CharField(max_length=200)


class RangeSerializer(serializers.Serializer):
    min = serializers.IntegerField(min_value=1)
    max = serializers.IntegerField(min_value=1)
    step = serializers.IntegerField(min_value=1, default=1)


class OperatorSerializer(StrictJsonTypes, RejectUnknownFields, serializers.Serializer):
    """A product for resellers: ranged (`range`) or fixed `packages`, one of the two."""

    openapi_request_rules = {
        "allOf": [
            {"oneOf": [{"required": ["range"]}, {"required": ["packages"]}]},
            {  # sats delivered by LNURL-withdraw: a SAT product
                "anyOf": [
                    {"not": {"required": ["delivery"]}},
                    {"properties": {"delivery": {"pattern": "^(none|code|link)$"}}},
                    {"properties": {"currency": {"pattern": "^SAT$"}}},
                ]
            },
            {
                "anyOf": [
                    {"not": {"required": ["delivery"]}},
                    {"properties": {"delivery": {"pattern": "^(none|code|lnurl_withdraw)$"}}},
                    {
                        "required": ["deliveryLink"],
                        "properties": {"deliveryLink": {"minLength": 1}},
                    },
                ]
            },
        ]
    }

    slug = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200)
    currency = serializers.ChoiceField(choices=Operator.Currency.choices, default="SAT")
    range = RangeSerializer(
        required=False, help_text="A ranged product (any value from min to max by step)."
    )
    packages = serializers.ListField(
        child=ValuePackageField(),
        required=False,
        min_length=1,
        max_length=100,
        help_text="Or fixed values.",
    )
    priceRate = serializers.DecimalField(
        source="price_rate",
        max_digits=12,
        decimal_places=6,
        min_value=0,
        required=False,
        coerce_to_string=True,
        help_text="Price in sats = value x priceRate (converted for fiat) + purchaseFee.",
    )
    purchaseFee = serializers.IntegerField(
        source="purchase_fee_sats", min_value=0, max_value=10**12, default=0
    )
    delivery = serializers.ChoiceField(choices=Operator.Delivery.choices, default="none")
    deliveryLink = serializers.URLField(
        source="delivery_link", max_length=2000, required=False, allow_blank=True
    )
    instructions = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if ("range" in attrs) == ("packages" in attrs):
            raise serializers.ValidationError("Give range or packages (one of them).")
        bounds = attrs.get("range")
        if bounds and bounds["min"] > bounds["max"]:
            # Beyond what the schema says: its own slug (see tests/test_api_contract.py).
            raise Problem(
                400,
                "invalid_range",
                "range: min must not be above max.",
                {"range": ["min must not be above max."]},
            )
        if attrs["delivery"] == "lnurl_withdraw" and attrs["currency"] != "SAT":
            raise serializers.ValidationError(
                {"delivery": ["lnurl_withdraw delivers sats: the product's currency is SAT."]}
            )
        if attrs["delivery"] == "link" and not attrs.get("delivery_link"):
            raise serializers.ValidationError({"deliveryLink": ["Needed for delivery link."]})
        attrs["ranged"] = bounds is not None
        return attrs


class CodesSerializer(StrictJsonTypes, RejectUnknownFields, serializers.Serializer):
    codes = serializers.ListField(
        child=serializers.CharField(max_length=500), min_length=1, max_length=10_000
    )


def operator_data(operator: Operator) -> dict:
    """The seed's `operator` shape (GET /v1/inventory/{slug})."""
    data = {
        "name": operator.name,
        "slug": operator.slug,
        "isRanged": operator.ranged,
        "currency": operator.currency,
    }
    rate = float(operator.price_rate)  # the seed's rates are JSON numbers
    if operator.ranged:
        data["range"] = {
            "min": operator.range_min,
            "max": operator.range_max,
            "step": operator.range_step,
            "customerSatoshiPriceRate": rate if operator.currency == "SAT" else None,
            "customerPriceRate": rate,
            "userPriceRate": rate,
            "purchaseFee": operator.purchase_fee_sats,
        }
    else:
        from . import services  # services -> events -> serializers: imported on use

        data["packages"] = [
            {
                "value": str(value),
                "satoshiPrice": services.price_sats(operator, Decimal(str(value))),
            }
            for value in operator.packages
        ]
    data["delivery"] = operator.delivery
    if operator.delivery == Operator.Delivery.CODE:
        data["inStock"] = operator.codes.filter(order__isnull=True).count()
    return data


def order_data(order: Order) -> dict:
    """An order as the seed shows it (GET /v1/order/{id} and the webhook body)."""
    invoice = order.invoice if order.invoice_id else None
    expired = order.status == Order.Status.EXPIRED or (
        order.status == Order.Status.UNPAID and invoice and invoice.expires_at <= timezone.now()
    )
    data = {
        "id": order.public_id,
        "email": order.email or None,
        "expired": bool(expired),
        "value": order.value_package,
        "product": order.operator.slug,
        "currency": order.operator.currency,
        "price": order.price_sats,
        "satoshiPrice": order.price_sats,
        "partialPayment": False,
        "userRef": order.user_ref or None,
        "status": Order.Status.EXPIRED if expired else order.status,
        "paymentMethod": order.payment_method,
    }
    if invoice is not None:
        data["payment"] = {
            "lightningInvoice": invoice.bolt11,
            "satoshiPrice": order.price_sats,
            "altcoinCode": "LNBC",
        }
    if order.delivery:
        data["delivery"] = order.delivery
        if order.delivery.get("type") == "lnurl_withdraw":  # the seed's shape for it
            data["thorInfo"] = {
                key: order.delivery[key]
                for key in ("link", "k1", "lnurl", "other")
                if key in order.delivery
            }
    if order.failure_reason:
        data["failureReason"] = order.failure_reason
    return data
