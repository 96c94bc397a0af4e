from django.conf import settings
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from config.serializers import StrictJsonTypes

from .fields import mask
from .models import ShopifyOrder, api_version_validator, shop_domain_validator
from .services import MAX_ITEMS, MAX_QUANTITY, MAX_UNITS

RESERVED_SLUGS = {"stores"}  # would clash with /api/shopify/stores/...


def _usd(**kwargs):
    return serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0, **kwargs)


class ShopifyShippingSerializer(StrictJsonTypes, serializers.Serializer):
    domesticUsd = _usd(source="domestic_shipping_usd", required=False)
    domesticCountry = serializers.RegexField(
        r"^[A-Z]{2}$",
        source="domestic_country",
        required=False,
        help_text="ISO 3166-1 alpha-2 code of the country shipped to at the domestic rate.",
    )
    domesticOnly = serializers.BooleanField(source="domestic_only", required=False)
    freeShippingEnabled = serializers.BooleanField(source="free_shipping_enabled", required=False)
    freeShippingThresholdUsd = _usd(
        source="free_shipping_threshold_usd", required=False, allow_null=True
    )


class ShopifyStoreSerializer(StrictJsonTypes, serializers.Serializer):
    slug = serializers.SlugField(max_length=60)
    storeName = serializers.CharField(source="name", max_length=200)
    shopDomain = serializers.CharField(
        source="shop_domain", max_length=255, validators=[shop_domain_validator]
    )
    accessToken = serializers.CharField(
        source="access_token",
        write_only=True,
        max_length=500,
        help_text="Admin API access token (shpat_...). Never shown back.",
    )
    accessTokenHint = serializers.SerializerMethodField(
        help_text="The last characters of the access token."
    )
    apiVersion = serializers.CharField(
        source="api_version", required=False, validators=[api_version_validator]
    )
    webhookSecret = serializers.CharField(
        source="webhook_secret",
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="The secret Shopify signs webhooks with (the app's client secret).",
    )
    webhookSecretSet = serializers.SerializerMethodField()
    webhookUrl = serializers.SerializerMethodField(
        help_text="Where to point the store's orders/fulfilled and fulfillments webhooks."
    )
    shipping = ShopifyShippingSerializer(source="*", required=False)
    active = serializers.BooleanField(required=False)
    catalogSyncedAt = serializers.DateTimeField(
        source="catalog_synced_at", read_only=True, allow_null=True
    )
    lastSyncError = serializers.CharField(source="last_sync_error", read_only=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)

    def get_accessTokenHint(self, store) -> str:
        return mask(store.access_token)

    def get_webhookSecretSet(self, store) -> bool:
        return bool(store.webhook_secret)

    def get_webhookUrl(self, store) -> str:
        return f"{settings.PUBLIC_BASE_URL}/api/shopify/{store.slug}/webhooks"

    def validate_slug(self, value):
        if value in RESERVED_SLUGS:
            raise serializers.ValidationError(f"'{value}' is reserved.")
        if self.instance is not None and value != self.instance.slug:
            raise serializers.ValidationError("The slug cannot change (buyers' links use it).")
        return value


@extend_schema_serializer(exclude_fields=["slug"])  # cannot change: not part of a change
class ShopifyStoreUpdateSerializer(ShopifyStoreSerializer):
    slug = serializers.SlugField(max_length=60, required=False)


class ShopifyVariantSerializer(serializers.Serializer):
    variantId = serializers.IntegerField()
    title = serializers.CharField()
    priceUsd = serializers.CharField(help_text="Decimal string, e.g. '12.50'.")
    available = serializers.BooleanField()


class ShopifyProductSerializer(serializers.Serializer):
    productId = serializers.IntegerField()
    title = serializers.CharField()
    description = serializers.CharField()
    imageUrl = serializers.URLField(allow_null=True)
    variants = ShopifyVariantSerializer(many=True)


class ShopifyCatalogSerializer(serializers.Serializer):
    storeName = serializers.CharField()
    slug = serializers.CharField()
    shipping = ShopifyShippingSerializer()
    products = ShopifyProductSerializer(many=True)


class ShopifyCheckoutItemSerializer(StrictJsonTypes, serializers.Serializer):
    variantId = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY, default=1)


class ShopifyCheckoutSerializer(StrictJsonTypes, serializers.Serializer):
    items = ShopifyCheckoutItemSerializer(many=True, min_length=1, max_length=MAX_ITEMS)

    def validate_items(self, items):
        units = sum(item["quantity"] for item in items)
        if units > MAX_UNITS:
            raise serializers.ValidationError(
                f"At most {MAX_UNITS} units in all per order; this cart has {units}."
            )
        return items


class ShopifyChallengeSerializer(serializers.Serializer):
    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    error = serializers.CharField()
    orderId = serializers.CharField()
    subtotalUsd = serializers.CharField()
    shippingUsd = serializers.CharField()
    totalUsd = serializers.CharField()
    amountSats = serializers.IntegerField()
    invoice = serializers.CharField(help_text="BOLT11 invoice to pay.")
    macaroon = serializers.CharField(help_text="L402 macaroon, standard base64.")
    paymentHash = serializers.CharField()
    expiresAt = serializers.DateTimeField()
    checkoutUrl = serializers.URLField(
        help_text="Hosted payment page, for wallets that do not hand back the preimage."
    )


class ShopifyPaidCheckoutSerializer(serializers.Serializer):
    orderId = serializers.CharField()
    status = serializers.ChoiceField(choices=ShopifyOrder.Status.choices)
    claimToken = serializers.CharField()
    claimPageUrl = serializers.URLField()


class ShopifyShippingAddressSerializer(StrictJsonTypes, serializers.Serializer):
    firstName = serializers.CharField(max_length=100)
    lastName = serializers.CharField(max_length=100)
    address1 = serializers.CharField(max_length=255)
    address2 = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    city = serializers.CharField(max_length=100)
    province = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="State or province code, e.g. CA.",
    )
    zip = serializers.CharField(max_length=20)
    country = serializers.RegexField(
        r"^[A-Za-z]{2}$", help_text="ISO 3166-1 alpha-2 country code, e.g. US."
    )


class ShopifyClaimSerializer(StrictJsonTypes, serializers.Serializer):
    claimToken = serializers.CharField(min_length=1, max_length=20)
    email = serializers.EmailField(max_length=200)
    shippingAddress = ShopifyShippingAddressSerializer()


class ShopifyClaimResultSerializer(serializers.Serializer):
    orderId = serializers.CharField()
    status = serializers.ChoiceField(choices=ShopifyOrder.Status.choices)
    shopifyOrderNumber = serializers.CharField(allow_null=True)
    claimPageUrl = serializers.URLField()
    message = serializers.CharField()


class ShopifyOrderStatusSerializer(serializers.Serializer):
    orderId = serializers.CharField(source="public_id")
    status = serializers.ChoiceField(choices=ShopifyOrder.Status.choices)
    totalUsd = serializers.DecimalField(source="total_usd", max_digits=12, decimal_places=2)
    paidSats = serializers.IntegerField(source="paid_sats", allow_null=True)
    shopifyOrderNumber = serializers.SerializerMethodField()
    trackingNumber = serializers.SerializerMethodField()
    trackingCarrier = serializers.SerializerMethodField()
    trackingUrl = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    paidAt = serializers.DateTimeField(source="paid_at", allow_null=True)
    shippedAt = serializers.DateTimeField(source="shipped_at", allow_null=True)

    def get_shopifyOrderNumber(self, order) -> str | None:
        return order.shopify_order_number or None

    def get_trackingNumber(self, order) -> str | None:
        return order.tracking_number or None

    def get_trackingCarrier(self, order) -> str | None:
        return order.tracking_carrier or None

    def get_trackingUrl(self, order) -> str | None:
        return order.tracking_url or None


class ShopifyStatsSerializer(serializers.Serializer):
    stores = serializers.ListField(child=serializers.DictField())
    totals = serializers.DictField()


class ShopifySyncQueuedSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
