"""The LNbits payments API's bodies (seed `lnbits-payments-api.txt`): snake_case, amounts in
sats (negative for outgoing), fees in msat, times as Unix seconds."""

import hashlib
import re

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from config.money import MAX_SATS
from config.serializers import StrictJsonTypes
from webhooks.serializers import WebhookUrlField

from .models import Payment

HEX32 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_EXPIRY_SECONDS = 30 * 24 * 3600


def _unix(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def _sign(payment: Payment) -> int:
    return -1 if payment.direction == Payment.Direction.OUT else 1


def payment_details(payment: Payment) -> dict:
    """A payment as LNbits shows it in `details` and in lists."""
    return {
        "checking_id": payment.payment_hash,
        "payment_hash": payment.payment_hash,
        "wallet_id": payment.wallet.public_id,
        "amount": _sign(payment) * (payment.amount_msat // 1000),
        "amount_msat": payment.signed_amount_msat,
        "fee": payment.fee_msat,
        "memo": payment.memo,
        "status": payment.status,
        "pending": payment.status == Payment.Status.PENDING,
        "time": _unix(payment.created_at),
        "bolt11": payment.bolt11,
        "preimage": payment.preimage or None,
        "extra": payment.extra,
        "tag": payment.tag or None,
        "webhook": payment.webhook or None,
        "expiry": _unix(payment.expires_at),
        "settled_at": _unix(payment.settled_at),
        "failure_reason": payment.failure_reason or None,
    }


class PreimageRequest(StrictJsonTypes, serializers.Serializer):
    preimage = serializers.RegexField(HEX32, help_text="The hold invoice's preimage, hex.")


class PaymentHashRequest(StrictJsonTypes, serializers.Serializer):
    payment_hash = serializers.RegexField(HEX32)


class ListQuery(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
    status = serializers.ChoiceField(choices=Payment.Status.choices, required=False)


class HistoryQuery(serializers.Serializer):
    group = serializers.ChoiceField(choices=["hour", "day", "month"], required=False, default="day")


# What the answers look like, for the OpenAPI document (the views render plain dicts).
_int = serializers.IntegerField
_str = serializers.CharField


class WalletPaymentDetails(serializers.Serializer):
    checking_id = _str()
    payment_hash = _str()
    wallet_id = _str()
    amount = _int(help_text="sats; negative for outgoing")
    amount_msat = _int(help_text="msat; negative for outgoing")
    fee = _int(help_text="routing fee in msat")
    memo = _str(allow_blank=True)
    status = serializers.ChoiceField(choices=Payment.Status.choices)
    pending = serializers.BooleanField()
    time = _int(help_text="Unix seconds")
    bolt11 = _str()
    preimage = _str(allow_null=True)
    extra = serializers.DictField()
    tag = _str(allow_null=True)
    webhook = _str(allow_null=True)
    expiry = _int(allow_null=True)
    settled_at = _int(allow_null=True)
    failure_reason = _str(allow_null=True)


class WalletPaymentsPage(serializers.Serializer):
    data = WalletPaymentDetails(many=True)
    total = _int()


class WalletHistoryEntry(serializers.Serializer):
    date = _str()
    income = _int()
    spending = _int()


class WalletTagCount(serializers.Serializer):
    tag = _str(allow_null=True)
    count = _int()


class WalletStats(serializers.Serializer):
    wallet_id = _str()
    wallet_name = _str()
    total_income = _int()
    total_spending = _int()
    payment_count = _int()


class WalletDailyStats(serializers.Serializer):
    date = _str()
    count = _int()
    total = _int()
    count_in = _int()
    count_out = _int()
    balance_in = _int()
    balance_out = _int()
    fee = _int()


# POST /api/v1/payments has two shapes, told apart by `out` (oneOf in the OpenAPI document).
class WalletReceive(StrictJsonTypes, serializers.Serializer):
    """`out: false` (or no `out`): an invoice into the wallet."""

    out = serializers.ChoiceField(choices=[False], required=False, help_text="false: receive")
    amount = serializers.IntegerField(min_value=1, max_value=MAX_SATS, help_text="In sats.")
    memo = serializers.CharField(required=False, allow_blank=True, max_length=639, default="")
    expiry = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_EXPIRY_SECONDS, default=3600
    )
    webhook = WebhookUrlField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Called (signed, through the webhook outbox) once the invoice is paid.",
    )
    extra = serializers.DictField(required=False, default=dict)
    payment_hash = serializers.RegexField(
        HEX32,
        required=False,
        help_text="Makes a hold invoice for this hash: you keep the preimage, and settle "
        "(or cancel) the payment once it is held.",
    )
    description_hash = serializers.RegexField(HEX32, required=False)
    unhashed_description = serializers.RegexField(r"^(?:[0-9a-fA-F]{2})*$", required=False)

    def validate(self, data):
        # As LNbits: the invoice commits to a hash of the description (LNURL-pay's metadata)
        # instead of carrying it; `description_hash` wins over `unhashed_description`.
        if "description_hash" in data:
            data["description_hash"] = data["description_hash"].lower()
        elif "unhashed_description" in data:
            data["description_hash"] = hashlib.sha256(
                bytes.fromhex(data["unhashed_description"])
            ).hexdigest()
        return data


class WalletPay(StrictJsonTypes, serializers.Serializer):
    """`out: true`: pay `bolt11` (admin key)."""

    out = serializers.ChoiceField(choices=[True], help_text="true: pay (admin key)")
    bolt11 = serializers.CharField(max_length=7089, help_text="The invoice to pay.")
    extra = serializers.DictField(required=False, default=dict)


def payment_request(data) -> serializers.Serializer:
    """The serializer of this body's shape: paying when `out` is true, else receiving."""
    out = data.get("out") if isinstance(data, dict) else None
    return (WalletPay if out is True else WalletReceive)(data=data)


PAYMENT_REQUEST = PolymorphicProxySerializer(
    component_name="WalletPaymentCreate",
    serializers=[WalletReceive, WalletPay],
    resource_type_field_name=None,
)
