import re

from rest_framework import serializers

from config.money import MAX_SATS

from . import paths
from .manifest import manifest_url, proxy_base_url
from .models import L402Challenge, PaidContent, Proxy, ProxyEndpoint
from .services import PROXY_METHODS

HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
FORBIDDEN_AUTH_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "cookie"}


class ChallengeRequest(serializers.Serializer):
    resource = serializers.CharField(max_length=500)
    priceSats = serializers.IntegerField(min_value=1, max_value=MAX_SATS)
    description = serializers.CharField(
        max_length=640, required=False, allow_blank=True, allow_null=True, default=""
    )


class ChallengeResponse(serializers.Serializer):
    invoice = serializers.CharField()
    macaroon = serializers.CharField()
    paymentHash = serializers.CharField()
    expiresAt = serializers.DateTimeField()
    resource = serializers.CharField()
    priceSats = serializers.IntegerField()
    mppChallenge = serializers.CharField()


class ChallengeItem(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    priceSats = serializers.IntegerField(source="price_sats")
    paymentHash = serializers.CharField(source="invoice.payment_hash")
    invoice = serializers.CharField(source="invoice.bolt11")
    proxyId = serializers.CharField(source="proxy.proxy_id", default=None, allow_null=True)
    status = serializers.CharField(help_text="pending, paid or expired")
    createdAt = serializers.DateTimeField(source="created_at")
    expiresAt = serializers.DateTimeField(source="invoice.expires_at")
    paidAt = serializers.DateTimeField(source="invoice.paid_at", allow_null=True)

    class Meta:
        model = L402Challenge
        fields = [
            "id",
            "kind",
            "resource",
            "description",
            "priceSats",
            "status",
            "paymentHash",
            "invoice",
            "proxyId",
            "createdAt",
            "expiresAt",
            "paidAt",
        ]


class VerifyRequest(serializers.Serializer):
    macaroon = serializers.CharField(allow_null=True, required=False, allow_blank=True)
    preimage = serializers.CharField()


class VerifyResponse(serializers.Serializer):
    valid = serializers.BooleanField()
    resource = serializers.CharField(allow_null=True)
    merchantId = serializers.CharField(allow_null=True)
    amountSats = serializers.IntegerField(allow_null=True)
    paymentHash = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class ContentSummary(serializers.ModelSerializer):
    priceSats = serializers.IntegerField(source="price_sats")
    merchantId = serializers.CharField(source="merchant.public_id")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = PaidContent
        fields = ["slug", "title", "teaser", "priceSats", "merchantId", "createdAt"]


class ContentItem(ContentSummary):
    class Meta(ContentSummary.Meta):
        fields = [*ContentSummary.Meta.fields, "body"]


class ContentCreate(serializers.ModelSerializer):
    priceSats = serializers.IntegerField(source="price_sats", min_value=1, max_value=MAX_SATS)
    isPublished = serializers.BooleanField(source="is_published", default=True)

    class Meta:
        model = PaidContent
        fields = ["slug", "title", "teaser", "body", "priceSats", "isPublished"]


class BundleRequest(serializers.Serializer):
    slugs = serializers.ListField(
        child=serializers.SlugField(max_length=100), min_length=1, max_length=50
    )


class BundleResponse(serializers.Serializer):
    items = ContentItem(many=True)


class ProxyEndpointSerializer(serializers.ModelSerializer):
    endpointId = serializers.SlugField(source="endpoint_id", max_length=100)
    httpMethod = serializers.CharField(source="http_method", max_length=7)
    basePriceSats = serializers.IntegerField(
        source="base_price_sats", min_value=1, max_value=MAX_SATS
    )
    summary = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    class Meta:
        model = ProxyEndpoint
        fields = ["endpointId", "path", "httpMethod", "summary", "basePriceSats"]

    def validate_path(self, value):
        try:
            return paths.clean_pattern(value)
        except paths.InvalidPath as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_httpMethod(self, value):
        return _method(value)


def _method(value: str) -> str:
    if value.upper() not in PROXY_METHODS:
        raise serializers.ValidationError(f"Must be one of {', '.join(PROXY_METHODS)}.")
    return value.upper()


class PathPatterns(serializers.ListField):
    """Path patterns (l402.paths), bounded and stored in normal form."""

    def __init__(self, **kwargs):
        super().__init__(
            child=serializers.CharField(max_length=paths.MAX_PATTERN_LENGTH),
            required=False,
            default=list,
            **kwargs,
        )

    def to_internal_value(self, data):
        try:
            return paths.clean_patterns(super().to_internal_value(data))
        except paths.InvalidPath as exc:
            raise serializers.ValidationError(str(exc)) from None


class ProxySerializer(serializers.ModelSerializer):
    """Input and output of a proxy; authValue is write-only (stored encrypted)."""

    proxyId = serializers.CharField(source="proxy_id", read_only=True)
    targetBaseUrl = serializers.URLField(source="target_base_url", max_length=2000)
    defaultPriceSats = serializers.IntegerField(
        source="default_price_sats", min_value=1, max_value=MAX_SATS
    )
    isActive = serializers.BooleanField(source="is_active", default=True)
    authHeader = serializers.CharField(
        source="auth_header", max_length=100, required=False, allow_blank=True, default=""
    )
    authValue = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=4000
    )
    hasAuthValue = serializers.SerializerMethodField()
    timeout = serializers.IntegerField(source="timeout_seconds", min_value=1, default=30)
    allowedMethods = serializers.ListField(
        source="allowed_methods",
        child=serializers.ChoiceField(choices=PROXY_METHODS),
        required=False,
        default=list,
    )
    allowedPaths = PathPatterns(source="allowed_paths")
    blockedPaths = PathPatterns(source="blocked_paths")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    proxyUrl = serializers.SerializerMethodField()
    manifestUrl = serializers.SerializerMethodField()
    manifestEnabled = serializers.BooleanField(source="manifest_enabled", read_only=True)
    manifestPubliclyListed = serializers.BooleanField(
        source="manifest_publicly_listed", read_only=True
    )
    serviceDescription = serializers.CharField(source="service_description", read_only=True)
    categories = serializers.ListField(child=serializers.CharField(), read_only=True)
    endpoints = ProxyEndpointSerializer(many=True, read_only=True)
    retired = serializers.SerializerMethodField()
    retiredAt = serializers.DateTimeField(source="retired_at", read_only=True)
    retiredReason = serializers.CharField(source="retired_reason", read_only=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = Proxy
        fields = [
            "proxyId",
            "name",
            "description",
            "targetBaseUrl",
            "defaultPriceSats",
            "isActive",
            "authHeader",
            "authValue",
            "hasAuthValue",
            "timeout",
            "allowedMethods",
            "allowedPaths",
            "blockedPaths",
            "proxyUrl",
            "manifestUrl",
            "manifestEnabled",
            "manifestPubliclyListed",
            "serviceDescription",
            "categories",
            "endpoints",
            "retired",
            "retiredAt",
            "retiredReason",
            "createdAt",
            "updatedAt",
        ]

    def get_hasAuthValue(self, proxy) -> bool:
        return bool(proxy.auth_value_encrypted)

    def get_proxyUrl(self, proxy) -> str:
        return proxy_base_url(proxy)

    def get_manifestUrl(self, proxy) -> str:
        return manifest_url(proxy)

    def get_retired(self, proxy) -> bool:
        return proxy.retired_at is not None

    def validate_timeout(self, value):
        from django.conf import settings

        if value > settings.L402_PROXY_MAX_TIMEOUT_SECONDS:
            raise serializers.ValidationError(
                f"Must be at most {settings.L402_PROXY_MAX_TIMEOUT_SECONDS} seconds."
            )
        return value

    def validate_authHeader(self, value):
        if value and (not HEADER_NAME.match(value) or value.lower() in FORBIDDEN_AUTH_HEADERS):
            raise serializers.ValidationError("Must be an HTTP header name other than Host etc.")
        return value

    def validate_allowedMethods(self, value):
        return list(dict.fromkeys(m.upper() for m in value))

    def validate(self, attrs):
        header = attrs.get("auth_header", getattr(self.instance, "auth_header", ""))
        if attrs.get("authValue") and not header:
            raise serializers.ValidationError({"authHeader": ["Required with authValue."]})
        return attrs


class UnpublishRequest(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class UnpublishResponse(serializers.Serializer):
    proxyId = serializers.CharField()
    retired = serializers.BooleanField()
    alreadyRetired = serializers.BooleanField()


class ManifestSettings(serializers.Serializer):
    manifestEnabled = serializers.BooleanField(source="manifest_enabled", required=False)
    manifestPubliclyListed = serializers.BooleanField(
        source="manifest_publicly_listed", required=False
    )
    serviceDescription = serializers.CharField(
        source="service_description", required=False, allow_blank=True, max_length=4000
    )
    documentationUrl = serializers.URLField(
        source="documentation_url", required=False, allow_blank=True, max_length=2000
    )
    categories = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, max_length=20
    )


class OneTimeKeyRequest(serializers.Serializer):
    proxyId = serializers.CharField(max_length=80)
    method = serializers.CharField(max_length=7, default="POST")
    path = serializers.CharField(max_length=2000)
    body = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default="",
        trim_whitespace=False,
        help_text="The exact request body the key will pay for.",
    )

    def validate_method(self, value):
        return _method(value)


class OneTimeKeyResponse(serializers.Serializer):
    price = serializers.CharField(allow_null=True, help_text="USD, as a decimal string")
    value = serializers.IntegerField(help_text="msat")
    paymentRequest = serializers.CharField()
    apikey = serializers.CharField()


class RegistryQuery(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    category = serializers.CharField(required=False, allow_blank=True, default="", max_length=50)
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    pageSize = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
