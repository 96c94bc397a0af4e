import re

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.money import MAX_SATS
from config.serializers import StrictJsonTypes

from . import paths
from .manifest import manifest_url, proxy_base_url
from .models import L402Challenge, PaidContent, Proxy, ProxyEndpoint
from .services.proxies import PROXY_METHODS

HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
FORBIDDEN_AUTH_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "cookie"}


@extend_schema_field(
    {
        "type": "string",
        "maxLength": 100,
        "pattern": r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$",
        "description": "The header the proxy sets upstream with authValue (an HTTP header "
        f"name, not one of {', '.join(sorted(FORBIDDEN_AUTH_HEADERS))}).",
    }
)
class HeaderNameField(serializers.CharField):
    pass


def _method(value: str) -> str:
    if value.upper() not in PROXY_METHODS:
        raise serializers.ValidationError(f"Must be one of {', '.join(PROXY_METHODS)}.")
    return value.upper()


@extend_schema_field({"type": "string", "enum": list(PROXY_METHODS)})
class MethodField(serializers.CharField):
    """An HTTP method the proxy forwards (upper case; lower case is taken too)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=7, **kwargs)

    def to_internal_value(self, data):
        return _method(super().to_internal_value(data))


class ChallengeRequest(StrictJsonTypes, serializers.Serializer):
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
    amountSats = serializers.IntegerField(source="price_sats", help_text="= priceSats")
    paymentHash = serializers.CharField(source="invoice.payment_hash")
    invoice = serializers.CharField(source="invoice.bolt11")
    proxyId = serializers.CharField(source="proxy.proxy_id", default=None, allow_null=True)
    status = serializers.CharField(help_text="pending, paid or expired")
    createdAt = serializers.DateTimeField(source="created_at")
    expiresAt = serializers.DateTimeField(source="invoice.expires_at")
    paidAt = serializers.DateTimeField(source="invoice.paid_at", allow_null=True)
    idempotencyKey = serializers.CharField(source="idempotency_key", allow_null=True)

    class Meta:
        model = L402Challenge
        fields = [
            "id",
            "kind",
            "resource",
            "description",
            "priceSats",
            "amountSats",
            "status",
            "paymentHash",
            "invoice",
            "proxyId",
            "idempotencyKey",
            "createdAt",
            "expiresAt",
            "paidAt",
        ]


class DownloadedItem(serializers.Serializer):
    slug = serializers.CharField()
    title = serializers.CharField()
    priceSats = serializers.IntegerField()
    published = serializers.BooleanField()
    downloads = serializers.IntegerField(help_text="Paid purchases: alone or in bundles.")
    soldAlone = serializers.IntegerField()
    soldInBundles = serializers.IntegerField()
    revenueSats = serializers.IntegerField(help_text="From purchases of the item alone.")


class BundleSales(serializers.Serializer):
    sold = serializers.IntegerField()
    revenueSats = serializers.IntegerField()


class DownloadStats(serializers.Serializer):
    totalDownloads = serializers.IntegerField()
    revenueSats = serializers.IntegerField()
    items = DownloadedItem(many=True)
    bundles = BundleSales()


class ChallengeList(serializers.Serializer):
    items = ChallengeItem(many=True)
    challenges = ChallengeItem(many=True, help_text="The same rows as items.")
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    status = serializers.CharField(allow_null=True)


class VerifyRequest(StrictJsonTypes, serializers.Serializer):
    macaroon = serializers.CharField(allow_null=True, required=False, allow_blank=True)
    preimage = serializers.CharField(required=False)
    paymentCredential = serializers.CharField(
        required=False,
        max_length=16384,
        help_text="An MPP credential (what follows `Payment ` in the buyer's Authorization "
        "header) for a challenge's mppChallenge: checked instead of macaroon and preimage.",
    )

    # The seed's body needs a preimage; an MPP credential carries its own.
    openapi_request_rules = {
        "anyOf": [
            {"required": ["preimage"], "properties": {"preimage": {"minLength": 1}}},
            {"required": ["paymentCredential"]},
        ]
    }

    def validate(self, attrs):
        if not attrs.get("paymentCredential") and not attrs.get("preimage"):
            raise serializers.ValidationError(
                {"preimage": ["This field is required (or give a paymentCredential)."]}
            )
        return attrs


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


class ContentCreate(StrictJsonTypes, serializers.ModelSerializer):
    priceSats = serializers.IntegerField(source="price_sats", min_value=1, max_value=MAX_SATS)
    isPublished = serializers.BooleanField(source="is_published", default=True)

    class Meta:
        model = PaidContent
        fields = ["slug", "title", "teaser", "body", "priceSats", "isPublished"]
        # A taken slug is a conflict (409 from the service), not a malformed request.
        extra_kwargs = {"slug": {"validators": []}}


class BundleRequest(StrictJsonTypes, serializers.Serializer):
    slugs = serializers.ListField(
        child=serializers.SlugField(max_length=100), min_length=1, max_length=50
    )


class BundleResponse(serializers.Serializer):
    items = ContentItem(many=True)


def _path_pattern_regex() -> str:
    """What l402.paths.clean_pattern takes, as a regular expression (but for the count of
    wildcards): /-separated segments of characters other than % ? # ; \\ and control
    characters, `*` and `{name}` wildcards, no `.` or `..` segment."""
    bad = r"/%?#;\\\x00-\x1f\x7f{}*"
    plain, plain_not_dot = f"[^{bad}]", f"[^{bad}.]"
    wildcard = rf"(?:\*|\{{[^{bad}]+\}})"
    first, then = f"(?:{plain_not_dot}|{wildcard})", f"(?:{plain}|{wildcard})"
    segment = rf"(?:\.{{0,2}}{first}{then}*|\.{{3,}}{then}*)?"
    return rf"^/{segment}(?:/{segment})*$"


@extend_schema_field(
    {
        "type": "string",
        "maxLength": paths.MAX_PATTERN_LENGTH,
        "allOf": [
            {"pattern": _path_pattern_regex()},
            # At most MAX_WILDCARDS wildcards.
            {"pattern": rf"^[^*{{]*(?:(?:\*|\{{[^}}]*\}})[^*{{]*){{0,{paths.MAX_WILDCARDS}}}$"},
        ],
        "description": "A path pattern: `{name}` matches one segment, `*` any run of "
        f"characters; at most {paths.MAX_WILDCARDS} of them. Matched ignoring case.",
        "example": "/v1/items/{id}",
    }
)
class PathPatternField(serializers.CharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=paths.MAX_PATTERN_LENGTH, **kwargs)


class ProxyEndpointSerializer(StrictJsonTypes, serializers.ModelSerializer):
    endpointId = serializers.SlugField(source="endpoint_id", max_length=100)
    httpMethod = MethodField(source="http_method")
    path = PathPatternField()
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


class PathPatterns(serializers.ListField):
    """Path patterns (l402.paths), bounded and stored in normal form."""

    def __init__(self, **kwargs):
        super().__init__(
            child=PathPatternField(),
            required=False,
            default=list,
            max_length=paths.MAX_PATTERNS,
            **kwargs,
        )

    def to_internal_value(self, data):
        try:
            return paths.clean_patterns(super().to_internal_value(data))
        except paths.InvalidPath as exc:
            raise serializers.ValidationError(str(exc)) from None


class ProxySerializer(StrictJsonTypes, serializers.ModelSerializer):
    """Input and output of a proxy; authValue is write-only (stored encrypted)."""

    proxyId = serializers.CharField(source="proxy_id", read_only=True)
    targetBaseUrl = serializers.URLField(source="target_base_url", max_length=2000)
    defaultPriceSats = serializers.IntegerField(
        source="default_price_sats", min_value=1, max_value=MAX_SATS
    )
    isActive = serializers.BooleanField(source="is_active", default=True)
    authHeader = HeaderNameField(
        source="auth_header", max_length=100, required=False, allow_blank=True, default=""
    )
    authValue = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=4000
    )
    hasAuthValue = serializers.SerializerMethodField()
    timeout = serializers.IntegerField(
        source="timeout_seconds",
        min_value=1,
        # The document's maximum; validate_timeout checks the setting as it is now.
        max_value=settings.L402_PROXY_MAX_TIMEOUT_SECONDS,
        default=30,
    )
    allowedMethods = serializers.ListField(
        source="allowed_methods",
        child=serializers.ChoiceField(choices=PROXY_METHODS),
        required=False,
        default=list,
    )
    allowedPaths = PathPatterns(source="allowed_paths")
    blockedPaths = PathPatterns(source="blocked_paths")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    graphql = serializers.BooleanField(
        required=False,
        default=False,
        help_text="A GraphQL pay-per-request API (Blocktap's flow): POST "
        "/l402/proxy/{proxyId}/api/invoice with {query, operation, variables} sells a one-time "
        "key; POST /l402/proxy/{proxyId}/graphql with the same body and X-Api-Key: <key> runs "
        "it once, at targetBaseUrl + /graphql.",
    )
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
    retiredAt = serializers.DateTimeField(source="retired_at", read_only=True, allow_null=True)
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
            "graphql",
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

    # authValue needs authHeader (on a change: the one given, or the proxy's own).
    openapi_request_rules = {
        "anyOf": [
            {"properties": {"authValue": {"maxLength": 0}}},
            {"required": ["authHeader"], "properties": {"authHeader": {"minLength": 1}}},
        ]
    }

    def get_hasAuthValue(self, proxy) -> bool:
        return bool(proxy.auth_value_encrypted)

    def get_proxyUrl(self, proxy) -> str:
        return proxy_base_url(proxy)

    def get_manifestUrl(self, proxy) -> str:
        return manifest_url(proxy)

    def get_retired(self, proxy) -> bool:
        return proxy.retired_at is not None

    def validate_timeout(self, value):
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


class UnpublishRequest(StrictJsonTypes, serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class UnpublishResponse(serializers.Serializer):
    proxyId = serializers.CharField()
    retired = serializers.BooleanField()
    alreadyRetired = serializers.BooleanField()


class ManifestSettings(StrictJsonTypes, serializers.Serializer):
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


class OneTimeKeyRequest(StrictJsonTypes, serializers.Serializer):
    proxyId = serializers.CharField(max_length=80)
    method = MethodField(default="POST")
    path = serializers.CharField(max_length=2000)
    body = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default="",
        trim_whitespace=False,
        help_text="The exact request body the key will pay for.",
    )


class GraphqlInvoiceRequest(serializers.Serializer):
    """Documents Blocktap's invoice body; the view checks the raw bytes (l402.services.
    one_time_keys), as the key is bound to exactly them."""

    query = serializers.CharField(help_text="The GraphQL query.")
    operation = serializers.CharField(
        required=False, allow_null=True, help_text="Which operation of `query` runs."
    )
    variables = serializers.DictField(required=False, allow_null=True)


class OneTimeKeyResponse(serializers.Serializer):
    price = serializers.FloatField(
        allow_null=True,
        help_text="The price in USD at today's rate, a number as in Blocktap's API (shown to "
        "the buyer; what is paid is `value`); null when no rate is available.",
    )
    value = serializers.IntegerField(help_text="The invoice's amount in msat.")
    paymentRequest = serializers.CharField()
    apikey = serializers.CharField()


class RegistryQuery(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    category = serializers.CharField(required=False, allow_blank=True, default="", max_length=50)
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    pageSize = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
