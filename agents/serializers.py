"""Request validation and the JSON shapes of the registry (camelCase, as in the seed pages)."""

import json

from django.core.validators import RegexValidator, URLValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.money import MAX_SATS
from config.serializers import StrictJsonTypes

from . import nostr
from .models import Agent, Agreement, Attestation, Capability, ServiceRequest

HEX64 = r"^[0-9a-fA-F]{64}$"
# The OpenAPI format of a key: 64 hex characters that are the x coordinate of a point on
# secp256k1 (about half of all 64-hex strings are not, and are refused).
PUBKEY_SCHEMA = {
    "type": "string",
    "format": "secp256k1-x-only",
    "pattern": HEX64,
    "description": "An x-only secp256k1 public key (BIP-340): 64 hex characters that are "
    "the x coordinate of a point on the curve.",
    "example": "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
}


@extend_schema_field(PUBKEY_SCHEMA)
class PubkeyField(serializers.CharField):
    """64 hex characters that are the x coordinate of a secp256k1 point; lower-cased."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            nostr.public_key(value)
        except nostr.NostrError as error:
            raise serializers.ValidationError(error.detail) from None
        return value.lower()


class Hex64Field(serializers.RegexField):
    def __init__(self, **kwargs):
        super().__init__(
            r"^[0-9a-fA-F]{64}$",
            error_messages={"invalid": "Must be 64 hex characters."},
            **kwargs,
        )

    def to_internal_value(self, data):
        return super().to_internal_value(data).lower()


def no_null_characters(value) -> None:
    """PostgreSQL cannot store NUL in text or jsonb: refuse it anywhere in a JSON value."""
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            no_null_characters(key)
            no_null_characters(item)
    elif isinstance(value, list):
        for item in value:
            no_null_characters(item)


class SatsField(serializers.IntegerField):
    def __init__(self, **kwargs):
        super().__init__(min_value=0, max_value=MAX_SATS, **kwargs)


@extend_schema_field({"type": "string", "maxLength": 50, "pattern": r"^[^|,]*[^|,\s][^|,]*$"})
class TermField(serializers.CharField):
    """A category or hashtag: trimmed, lower-case, no `|` or `,` (they separate terms)."""

    def __init__(self, **kwargs):
        super().__init__(min_length=1, max_length=50, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data).lower()
        if "|" in value or "," in value:
            raise serializers.ValidationError("Must not contain `|` or `,`.")
        return value


@extend_schema_field(
    {
        "type": "string",
        "maxLength": 2000,
        "nullable": True,
        "anyOf": [{"format": "uri", "pattern": "^https?://"}, {"pattern": "^(/.*)?$"}],
        "description": "An absolute http(s) URL, a path on this gateway (/l402/...), or empty "
        "(null is empty).",
        "example": "https://api.example.com/v1/translate",
    }
)
class UrlOrPathField(serializers.CharField):
    """An absolute http(s) URL, or a path on this gateway ("/l402/...")."""

    def __init__(self, **kwargs):
        super().__init__(max_length=2000, allow_blank=True, default="", **kwargs)

    def validate_empty_values(self, data):
        if data is None:  # lightning-enable-mcp sends null for "none"
            return (True, "")
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value and not value.startswith("/"):
            URLValidator(schemes=["http", "https"])(value)
        return value


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "description": "A signed NIP-01 event for this item (id, pubkey, created_at, kind, "
        "tags, content, sig), signed by the acting agent; its id becomes the item's eventId. "
        "Left out or null: the id is derived from the item.",
    }
)
class SignedEventField(serializers.JSONField):
    """An optional NIP-01 event for the item, signed by the acting agent; null is none."""

    default_error_messages = {"not_an_object": "Must be a signed NIP-01 event (an object)."}

    def __init__(self, **kwargs):
        super().__init__(required=False, allow_null=True, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_an_object")
        return super().to_internal_value(data)


class ActingPubkeyField(serializers.CharField):
    """The agent a request acts for. Left out (or null): with X-Api-Key, the merchant's only
    verified agent (a merchant with several names one); with NIP-98, the signer (if given,
    it must be the signer)."""

    def __init__(self, **kwargs):
        super().__init__(
            trim_whitespace=False,
            required=False,
            allow_null=True,
            validators=[RegexValidator(HEX64, "Must be 64 hex characters.")],
            help_text="The agent acted for (64 hex). Left out or null: with X-Api-Key the "
            "merchant's only verified agent (one with several must name one); with NIP-98 "
            "the signer (if given, it must be the signer).",
            **kwargs,
        )

    def validate_empty_values(self, data):
        if data is serializers.empty or data is None:
            return (True, None)  # left out: acting_agent decides
        return super().validate_empty_values(data)


# --- identity ------------------------------------------------------------------------------


class AgentRegistrationSerializer(StrictJsonTypes, serializers.Serializer):
    pubkey = PubkeyField()
    name = serializers.CharField(max_length=200, allow_blank=True, allow_null=True, default="")
    description = serializers.CharField(
        max_length=1000, allow_blank=True, allow_null=True, default=""
    )

    def validate_name(self, value):
        return value or ""

    def validate_description(self, value):
        return value or ""


class AgentSerializer(serializers.ModelSerializer):
    """An agent and its figures (read from an `agents_with_stats()` row)."""

    id = serializers.CharField(source="public_id")
    isActive = serializers.BooleanField(source="is_active")
    isVerified = serializers.BooleanField(source="is_verified")
    verifiedAt = serializers.DateTimeField(source="verified_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    totalRequests = serializers.IntegerField(source="total_requests")
    totalRevenueSats = serializers.IntegerField(source="total_revenue_sats")
    activeAgreements = serializers.IntegerField(source="active_agreements")

    class Meta:
        model = Agent
        fields = [
            "id",
            "pubkey",
            "name",
            "description",
            "isActive",
            "isVerified",
            "verifiedAt",
            "createdAt",
            "updatedAt",
            "totalRequests",
            "totalRevenueSats",
            "activeAgreements",
        ]
        read_only_fields = fields


class AgentListSerializer(serializers.Serializer):
    agents = AgentSerializer(many=True)
    total = serializers.IntegerField()


class AgentListQuerySerializer(serializers.Serializer):
    verified = serializers.BooleanField(required=False, allow_null=True, default=None)
    q = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)
    offset = serializers.IntegerField(required=False, default=0, min_value=0)


class AgentStatsSerializer(serializers.Serializer):
    pubkey = serializers.CharField()
    name = serializers.CharField()
    totalRequests = serializers.IntegerField()
    totalRevenueSats = serializers.IntegerField()
    activeAgreements = serializers.IntegerField()
    averageRevenuePerRequest = serializers.FloatField()
    isActive = serializers.BooleanField()
    registeredAt = serializers.DateTimeField()
    lastUpdated = serializers.DateTimeField()


class AgentChallengeQuerySerializer(serializers.Serializer):
    pubkey = PubkeyField()


class AgentChallengeSerializer(serializers.Serializer):
    challenge = serializers.CharField()
    pubkey = serializers.CharField()
    expiresInSeconds = serializers.IntegerField()


def _unchecked_hex(characters: int, description: str):
    """A string field whose hex format the service checks (the document states it)."""
    schema = {
        "type": "string",
        "pattern": rf"^[0-9a-fA-F]{{{characters}}}$",
        "description": description,
    }

    @extend_schema_field(schema)
    class UncheckedHexField(serializers.CharField):
        pass

    return UncheckedHexField(trim_whitespace=False)


class AgentVerificationSerializer(StrictJsonTypes, serializers.Serializer):
    """Presence only: the formats are checked by the service, after it spends the challenge,
    so that a malformed attempt uses up the challenge like any other (the OpenAPI document
    states the formats)."""

    pubkey = _unchecked_hex(64, "The agent's x-only public key (64 hex).")
    challenge = _unchecked_hex(64, "The challenge (64 hex).")
    signature = _unchecked_hex(128, "BIP-340 signature of the challenge's 32 bytes (128 hex).")


class AgentVerifiedSerializer(serializers.Serializer):
    pubkey = serializers.CharField()
    isVerified = serializers.BooleanField()
    verifiedAt = serializers.DateTimeField()
    message = serializers.CharField()


# --- capabilities --------------------------------------------------------------------------


class PublishCapabilitySerializer(StrictJsonTypes, serializers.Serializer):
    pubkey = ActingPubkeyField()
    serviceId = serializers.CharField(max_length=200)
    content = serializers.CharField(max_length=5000, allow_blank=True, default="")
    categories = serializers.ListField(child=TermField(), max_length=20, default=list)
    hashtags = serializers.ListField(child=TermField(), max_length=20, default=list)
    priceSats = SatsField()
    l402Endpoint = UrlOrPathField()
    targetUrl = UrlOrPathField()
    event = SignedEventField()


class CapabilityPublishedSerializer(serializers.Serializer):
    eventId = serializers.CharField()
    l402Endpoint = serializers.CharField(allow_null=True)


class CapabilitySerializer(serializers.ModelSerializer):
    eventId = serializers.CharField(source="event_id")
    serviceId = serializers.CharField(source="service_id")
    pubkey = serializers.CharField(source="agent.pubkey")
    categories = serializers.ListField(child=serializers.CharField())
    hashtags = serializers.ListField(child=serializers.CharField())
    priceSats = serializers.IntegerField(source="price_sats")
    l402Endpoint = serializers.SerializerMethodField()
    # A republished capability is a new version: its time is the version's.
    createdAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Capability
        fields = [
            "eventId",
            "serviceId",
            "pubkey",
            "content",
            "categories",
            "hashtags",
            "priceSats",
            "l402Endpoint",
            "createdAt",
        ]
        read_only_fields = fields

    def get_l402Endpoint(self, obj) -> str | None:
        return obj.l402_endpoint or None


class DiscoveryQuerySerializer(serializers.Serializer):
    category = serializers.RegexField(
        r"^[^|]*$", required=False, allow_blank=True, default="", max_length=50
    )
    q = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    hashtags = serializers.RegexField(
        r"^[^|]*$",
        required=False,
        allow_blank=True,
        default="",
        # A request line must fit the web server's limit (8190 bytes), percent-encoded.
        max_length=400,
        help_text="Comma-separated; a capability must carry all of them.",
    )

    def validate_category(self, value):
        if "|" in value:
            raise serializers.ValidationError("Must not contain `|`.")
        return value.strip().lower()

    def validate_hashtags(self, value):
        tags = [t.strip().lower() for t in value.split(",") if t.strip()]
        if any("|" in t for t in tags):
            raise serializers.ValidationError("Must not contain `|`.")
        return tags


class ActingQuerySerializer(serializers.Serializer):
    pubkey = ActingPubkeyField()


# --- requests and agreements ---------------------------------------------------------------


@extend_schema_field(
    {
        "nullable": True,
        "anyOf": [{"type": "object"}, {"type": "string", "maxLength": 20000}],
        "description": "What the provider needs: an object, or a string (a string holding a "
        "JSON object, as lightning-enable-mcp sends, is stored as that object). Null or left "
        "out: none.",
    }
)
class ParametersField(serializers.JSONField):
    """A request's parameters as clients send them: an object, a string, or null."""

    default_error_messages = {"invalid_type": "Must be an object or a string."}

    def __init__(self, **kwargs):
        super().__init__(required=False, allow_null=True, validators=[no_null_characters], **kwargs)

    def validate_empty_values(self, data):
        if data is serializers.empty or data is None:
            return (True, {})
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if isinstance(data, str):
            if len(data) > 20000:
                raise serializers.ValidationError("At most 20000 characters.")
            try:
                decoded = json.loads(data)
            except ValueError:
                return data
            return decoded if isinstance(decoded, dict) else data
        if not isinstance(data, dict):
            self.fail("invalid_type")
        return super().to_internal_value(data)


class CreateRequestSerializer(StrictJsonTypes, serializers.Serializer):
    pubkey = ActingPubkeyField()
    capabilityEventId = Hex64Field()
    budgetSats = SatsField()
    parameters = ParametersField()
    event = SignedEventField()


class RequestCreatedSerializer(serializers.Serializer):
    requestEventId = serializers.CharField()
    l402Endpoint = serializers.CharField(allow_null=True)


class ServiceRequestSerializer(serializers.ModelSerializer):
    requestEventId = serializers.CharField(source="event_id")
    capabilityEventId = serializers.CharField(source="capability_event_id")
    serviceId = serializers.CharField(source="capability.service_id")
    providerPubkey = serializers.CharField(source="provider.pubkey")
    requesterPubkey = serializers.CharField(source="requester.pubkey")
    budgetSats = serializers.IntegerField(source="budget_sats")
    agreementId = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = ServiceRequest
        fields = [
            "requestEventId",
            "capabilityEventId",
            "serviceId",
            "providerPubkey",
            "requesterPubkey",
            "budgetSats",
            "parameters",
            "agreementId",
            "createdAt",
        ]
        read_only_fields = fields

    def get_agreementId(self, obj) -> str | None:
        agreement = getattr(obj, "agreement", None)
        return agreement.event_id if agreement else None


class CreateAgreementSerializer(StrictJsonTypes, serializers.Serializer):
    pubkey = ActingPubkeyField()
    requestEventId = Hex64Field()
    priceSats = SatsField()
    terms = serializers.CharField(max_length=5000, allow_blank=True, default="")
    event = SignedEventField()


class CloseAgreementSerializer(StrictJsonTypes, serializers.Serializer):
    pubkey = ActingPubkeyField()


class AgreementSerializer(serializers.ModelSerializer):
    agreementId = serializers.CharField(source="event_id")
    requestEventId = serializers.CharField(source="request.event_id")
    providerPubkey = serializers.CharField(source="provider.pubkey")
    requesterPubkey = serializers.CharField(source="requester.pubkey")
    priceSats = serializers.IntegerField(source="price_sats")
    createdAt = serializers.DateTimeField(source="created_at")
    completedAt = serializers.DateTimeField(source="completed_at", allow_null=True)
    cancelledAt = serializers.DateTimeField(source="cancelled_at", allow_null=True)

    class Meta:
        model = Agreement
        fields = [
            "agreementId",
            "requestEventId",
            "providerPubkey",
            "requesterPubkey",
            "priceSats",
            "terms",
            "status",
            "createdAt",
            "completedAt",
            "cancelledAt",
        ]
        read_only_fields = fields


class AgreementQuerySerializer(serializers.Serializer):
    pubkey = ActingPubkeyField()
    status = serializers.ChoiceField(
        choices=Agreement.Status.choices, required=False, allow_blank=True, default=""
    )


# --- attestations --------------------------------------------------------------------------


class CreateAttestationSerializer(StrictJsonTypes, serializers.Serializer):
    pubkey = ActingPubkeyField()
    subjectPubkey = Hex64Field()
    agreementId = serializers.CharField(
        max_length=200,
        validators=[no_null_characters],
        help_text="The agreement's id (as GET /api/agents/agreements gives it); an id that "
        "names no agreement is a 404.",
    )
    rating = serializers.IntegerField(min_value=1, max_value=5)
    content = serializers.CharField(max_length=5000, allow_blank=True, default="")
    proof = serializers.CharField(
        max_length=5000,
        allow_blank=True,
        allow_null=True,
        default="",
        validators=[no_null_characters],
    )
    attestationId = serializers.CharField(max_length=200, allow_blank=True, default="")
    event = SignedEventField()


class AttestationCreatedSerializer(serializers.Serializer):
    eventId = serializers.CharField()


class AttestationSerializer(serializers.ModelSerializer):
    eventId = serializers.CharField(source="event_id")
    pubkey = serializers.CharField(source="reviewer.pubkey", help_text="The reviewer.")
    agreementId = serializers.CharField(source="agreement.event_id")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Attestation
        fields = ["eventId", "pubkey", "rating", "content", "agreementId", "proof", "createdAt"]
        read_only_fields = fields


class AttestationQuerySerializer(serializers.Serializer):
    pubkey = Hex64Field(help_text="The agent the attestations are about.")
