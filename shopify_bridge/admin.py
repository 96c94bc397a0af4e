"""The admin site: staff of a merchant (MerchantUser) see and edit only their own stores
and orders; superusers see everything. Secrets are write-only here too."""

from django import forms
from django.contrib import admin

from .fields import mask
from .models import ShopifyOrder, ShopifyOrderLine, ShopifyProduct, ShopifyStore, ShopifyVariant


def _merchant_of(request):
    link = getattr(request.user, "merchant_link", None)
    return link.merchant if link else None


class MerchantScoped(admin.ModelAdmin):
    merchant_path = "merchant"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        merchant = _merchant_of(request)
        if merchant is None:
            return queryset.none()
        return queryset.filter(**{self.merchant_path: merchant})

    def has_module_permission(self, request):
        return request.user.is_superuser or (
            request.user.is_staff and _merchant_of(request) is not None
        )

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)


class StoreForm(forms.ModelForm):
    """Secrets are entered, never shown: a blank field keeps the stored value."""

    access_token = forms.CharField(
        required=False, widget=forms.PasswordInput, help_text="Leave blank to keep the current."
    )
    webhook_secret = forms.CharField(
        required=False, widget=forms.PasswordInput, help_text="Leave blank to keep the current."
    )

    class Meta:
        model = ShopifyStore
        fields = [
            "merchant",
            "slug",
            "name",
            "shop_domain",
            "access_token",
            "api_version",
            "webhook_secret",
            "domestic_country",
            "domestic_shipping_usd",
            "domestic_only",
            "free_shipping_enabled",
            "free_shipping_threshold_usd",
            "active",
        ]

    def clean_access_token(self):
        value = self.cleaned_data["access_token"]
        if not value and not (self.instance.pk and self.instance.access_token):
            raise forms.ValidationError("The Admin API access token is required.")
        return value or self.instance.access_token

    def clean_webhook_secret(self):
        return self.cleaned_data["webhook_secret"] or self.instance.webhook_secret


@admin.register(ShopifyStore)
class ShopifyStoreAdmin(MerchantScoped):
    form = StoreForm
    list_display = ["slug", "name", "shop_domain", "token_hint", "active", "catalog_synced_at"]
    readonly_fields = ["catalog_synced_at", "last_sync_error"]

    @admin.display(description="Access token")
    def token_hint(self, store):
        return mask(store.access_token)

    def has_add_permission(self, request):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def save_model(self, request, obj, form, change):
        if not change and not request.user.is_superuser:
            obj.merchant = _merchant_of(request)
        super().save_model(request, obj, form, change)

    def get_exclude(self, request, obj=None):
        return [] if request.user.is_superuser else ["merchant"]


class VariantInline(admin.TabularInline):
    model = ShopifyVariant
    fields = ["variant_id", "title", "price_usd", "available"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ShopifyProduct)
class ShopifyProductAdmin(MerchantScoped):
    """The catalog copy is Shopify's: read-only here (sync to change it)."""

    merchant_path = "store__merchant"
    list_display = ["title", "store", "product_id"]
    list_filter = ["store"]
    readonly_fields = ["store", "product_id", "title", "description", "image_url", "position"]
    inlines = [VariantInline]

    def has_add_permission(self, request):
        return False


class LineInline(admin.TabularInline):
    model = ShopifyOrderLine
    fields = ["variant_id", "title", "quantity", "unit_price_usd"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ShopifyOrder)
class ShopifyOrderAdmin(MerchantScoped):
    """Orders change state only through their services (payment, claim, Shopify)."""

    merchant_path = "store__merchant"
    list_display = ["public_id", "store", "status", "total_usd", "paid_sats", "created_at"]
    list_filter = ["status", "store"]
    search_fields = ["public_id", "email", "shopify_order_number", "invoice__payment_hash"]
    exclude = ["claim_token_hash", "token_id", "caveats"]
    inlines = [LineInline]

    def get_readonly_fields(self, request, obj=None):
        fields = [f.name for f in self.model._meta.fields if f.name not in self.exclude]
        return ["refund", *fields]

    @admin.display(description="Refunds")
    def refund(self, order):
        from refunds.admin import refund_button

        return refund_button(order.invoice.payment_hash, order.paid_at is not None)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
