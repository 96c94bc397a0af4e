"""The JSON shapes of refunds (camelCase), and the validation of a refund request."""

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from checkout.serializers import CURRENCIES, MoneyField, RejectUnknownFields, format_amount
from config.serializers import StrictJsonTypes
from webhooks.services import isoformat

from . import lnurl
from .models import Refund


class RefundRequestSerializer(StrictJsonTypes, RejectUnknownFields, serializers.Serializer):
    amountSats = serializers.IntegerField(
        source="amount_sats",
        min_value=1,
        max_value=21_000_000 * 100_000_000,
        required=False,
        help_text="Refund this many sats. Leave out amountSats and amount to refund all "
        "that is left.",
    )
    amount = MoneyField(required=False, help_text="Or an amount in `currency` (a decimal string).")
    currency = serializers.ChoiceField(choices=CURRENCIES, required=False)
    rate = serializers.ChoiceField(
        source="rate_choice",
        choices=Refund.RateChoice.choices,
        required=False,
        default=Refund.RateChoice.PAYMENT,
        help_text='For a fiat amount: convert at the rate of payment time ("payment", the '
        'default) or today\'s ("current").',
    )
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    refundAddress = serializers.CharField(
        source="refund_address",
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="Pay the refund to this Lightning address (user@domain) or LNURL-pay "
        "instead of making a link (default: the checkout's refundAddress).",
    )
    email = serializers.EmailField(
        required=False,
        allow_blank=True,
        max_length=254,
        help_text="Email the buyer the refund link and receipt here (default: the email of "
        "the checkout or order).",
    )

    # amountSats, or amount and currency (both), or neither (all that is left); a SAT
    # amount is whole.
    openapi_request_rules = {
        "allOf": [
            {"not": {"required": ["amountSats", "amount"]}},
            {"not": {"required": ["amountSats", "currency"]}},
            {
                "anyOf": [
                    {"required": ["amount", "currency"]},
                    {"not": {"anyOf": [{"required": ["amount"]}, {"required": ["currency"]}]}},
                ]
            },
            {
                "anyOf": [
                    {"not": {"required": ["currency"]}},
                    {"properties": {"currency": {"pattern": "^(USD|EUR)$"}}},
                    {"properties": {"amount": {"pattern": "^0*[1-9][0-9]{0,15}$"}}},
                ]
            },
        ]
    }

    def validate_refundAddress(self, value):  # noqa: N802 (DRF: validate_<field name>)
        return lnurl.check_address(value) if value else value

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if "amount_sats" in attrs and ("amount" in attrs or "currency" in attrs):
            raise serializers.ValidationError("Give amountSats, or amount and currency, not both.")
        if ("amount" in attrs) != ("currency" in attrs):
            missing = "currency" if "amount" in attrs else "amount"
            raise serializers.ValidationError({missing: ["Needed with amount and currency."]})
        if attrs.get("currency") == "SAT" and attrs["amount"] != int(attrs["amount"]):
            raise serializers.ValidationError({"amount": ["A SAT amount must be a whole number."]})
        return attrs


class PaymentRefundRequestSerializer(RefundRequestSerializer):
    paymentHash = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$",
        source="payment_hash",
        required=False,
        help_text="The payment hash of what was paid: a checkout, a Shopify order, a paid L402 "
        "challenge or content, or a payment into your wallet.",
    )
    shopifyOrderId = serializers.CharField(
        source="shopify_order_id",
        max_length=40,
        required=False,
        help_text="Or the Shopify order refunded (shpfy_...), e.g. one in NeedsRefund.",
    )

    openapi_body_required = True
    openapi_request_rules = {
        "allOf": [
            *RefundRequestSerializer.openapi_request_rules["allOf"],
            {"oneOf": [{"required": ["paymentHash"]}, {"required": ["shopifyOrderId"]}]},
        ]
    }

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if ("payment_hash" in attrs) == ("shopify_order_id" in attrs):
            raise serializers.ValidationError("Give paymentHash or shopifyOrderId (one of them).")
        return attrs


def claim_url(refund: Refund) -> str:
    return settings.PUBLIC_BASE_URL + reverse("refund-page", args=[refund.claim_token])


def withdraw_callback_url(refund: Refund) -> str:
    return settings.PUBLIC_BASE_URL + reverse("refund-lnurlw-callback", args=[refund.claim_token])


def withdraw_lnurl(refund: Refund) -> str:
    url = settings.PUBLIC_BASE_URL + reverse("refund-lnurlw", args=[refund.claim_token])
    return lnurl.encode(url)


def refund_data(refund: Refund) -> dict:
    open_link = refund.state == Refund.State.CLAIMABLE and refund.claim_token
    payout = refund.payout if refund.payout_id else None
    return {
        "refundId": refund.public_id,
        "state": refund.state,
        "amountSats": refund.amount_msat // 1000,
        "amountMsat": refund.amount_msat,
        "amount": None
        if refund.fiat_amount is None
        else format_amount(refund.fiat_amount, refund.currency),
        "currency": refund.currency,
        "rate": None if refund.rate is None else f"{refund.rate.normalize():f}",
        "rateChoice": refund.rate_choice or None,
        "rateSource": refund.rate_source or None,
        "reason": refund.reason,
        "source": refund.source,
        "sourceId": refund.source_id,
        "refundAddress": refund.refund_address or None,
        "claimUrl": claim_url(refund) if open_link else None,
        "lnurl": withdraw_lnurl(refund) if open_link else None,
        "claimExpiresAt": isoformat(refund.claim_expires_at) if refund.claim_token else None,
        "payoutPaymentHash": refund.payment_hash or None,
        "payoutFeeMsat": payout.fee_msat if payout and payout.status == "success" else None,
        "payoutPreimage": payout.preimage or None if payout else None,
        "failureReason": refund.failure_reason or None,
        "email": refund.email or None,
        "createdAt": isoformat(refund.created_at),
        "completedAt": isoformat(refund.completed_at),
    }


class RefundSerializer(serializers.Serializer):
    """The shape of a refund, for the OpenAPI document (built by refund_data)."""

    refundId = serializers.CharField()
    state = serializers.ChoiceField(choices=Refund.State.choices)
    amountSats = serializers.IntegerField()
    amountMsat = serializers.IntegerField()
    amount = serializers.CharField(allow_null=True)
    currency = serializers.CharField()
    rate = serializers.CharField(allow_null=True)
    rateChoice = serializers.ChoiceField(choices=Refund.RateChoice.choices, allow_null=True)
    rateSource = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    source = serializers.ChoiceField(choices=Refund.Source.choices)
    sourceId = serializers.CharField()
    refundAddress = serializers.CharField(allow_null=True)
    claimUrl = serializers.URLField(allow_null=True, help_text="The buyer's refund page.")
    lnurl = serializers.CharField(
        allow_null=True, help_text="The LNURL-withdraw (LUD-03) of the refund, bech32."
    )
    claimExpiresAt = serializers.DateTimeField(allow_null=True)
    payoutPaymentHash = serializers.CharField(allow_null=True)
    payoutFeeMsat = serializers.IntegerField(allow_null=True)
    payoutPreimage = serializers.CharField(allow_null=True)
    failureReason = serializers.CharField(allow_null=True)
    email = serializers.EmailField(allow_null=True)
    createdAt = serializers.DateTimeField()
    completedAt = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance):
        return refund_data(instance)
