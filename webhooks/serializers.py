"""The JSON shapes of the webhooks API (camelCase) and the validation of what comes in."""

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.serializers import StrictJsonTypes
from config.ssrf import UnsafeTarget

from . import services
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookUrlField(serializers.URLField):
    """An http(s) URL that passes the SSRF guard (checked again at every send). Also used
    by checkout for an invoice's own `webhookUrl`."""

    def __init__(self, **kwargs):
        super().__init__(max_length=2000, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        try:
            services.vet_url(value)
        except UnsafeTarget as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "enum": ["*", *sorted(services.EVENT_TYPES)]},
        "minItems": 1,
        "maxItems": 100,
    }
)
class EventTypesField(serializers.ListField):
    child = serializers.CharField()

    def __init__(self, **kwargs):
        super().__init__(allow_empty=False, max_length=100, **kwargs)

    def to_internal_value(self, data):
        types = super().to_internal_value(data)
        unknown = [t for t in types if t != "*" and t not in services.EVENT_TYPES]
        if unknown:
            known = ", ".join(sorted(services.EVENT_TYPES))
            raise serializers.ValidationError(
                f'Unknown event type(s): {", ".join(unknown)}. Known: {known}, or "*".'
            )
        return ["*"] if "*" in types else list(dict.fromkeys(types))


class EndpointSerializer(StrictJsonTypes, serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    url = WebhookUrlField()
    events = EventTypesField()
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)
    disabledAt = serializers.DateTimeField(source="disabled_at", read_only=True, allow_null=True)
    disabledReason = serializers.CharField(source="disabled_reason", read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "description",
            "enabled",
            "createdAt",
            "updatedAt",
            "disabledAt",
            "disabledReason",
        ]


class EndpointWithSecretSerializer(EndpointSerializer):
    """The answer of a create or a rotation: the only time the secret is shown."""

    secret = serializers.CharField(read_only=True, help_text="whsec_..., shown only now.")
    previousSecretExpiresAt = serializers.DateTimeField(
        source="previous_secret_expires_at", read_only=True, allow_null=True
    )

    class Meta(EndpointSerializer.Meta):
        fields = EndpointSerializer.Meta.fields + ["secret", "previousSecretExpiresAt"]


class DefaultSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(read_only=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    previousSecretExpiresAt = serializers.DateTimeField(
        source="previous_secret_expires_at", read_only=True, allow_null=True
    )


class AttemptSerializer(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="started_at")
    statusCode = serializers.IntegerField(source="status_code", allow_null=True)
    durationMs = serializers.IntegerField(source="duration_ms")
    responseExcerpt = serializers.CharField(source="response_excerpt")

    class Meta:
        model = WebhookAttempt
        fields = ["number", "at", "statusCode", "durationMs", "responseExcerpt", "error"]


class DeliverySerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    eventId = serializers.CharField(source="event.public_id")
    eventType = serializers.CharField(source="event.type")
    attemptCount = serializers.IntegerField(source="attempt_count")
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at", allow_null=True)
    deliveredAt = serializers.DateTimeField(source="delivered_at", allow_null=True)
    lastStatusCode = serializers.IntegerField(source="last_status_code", allow_null=True)
    lastError = serializers.CharField(source="last_error")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "eventId",
            "eventType",
            "status",
            "attemptCount",
            "nextAttemptAt",
            "deliveredAt",
            "lastStatusCode",
            "lastError",
            "createdAt",
        ]


class DeliveryDetailSerializer(DeliverySerializer):
    event = serializers.SerializerMethodField()
    attempts = AttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = DeliverySerializer.Meta.fields + ["event", "attempts"]

    @extend_schema_field(
        {"type": "object", "description": "The event exactly as it is sent (the body)."}
    )
    def get_event(self, delivery):
        return json.loads(delivery.event.body)


class DeliveryFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False)
