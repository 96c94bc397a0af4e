"""Merchants manage their paywalled content, proxies and priced endpoints in the admin
site, scoped to their own merchant (checkout.admin.MerchantScopedAdmin); challenges are
read-only."""

from django import forms
from django.contrib import admin

from checkout.admin import MerchantScopedAdmin
from config.ssrf import UnsafeTarget

from .forwarding import seal
from .models import L402Challenge, PaidContent, Proxy, ProxyEndpoint
from .services import proxies


@admin.register(PaidContent)
class PaidContentAdmin(MerchantScopedAdmin):
    list_display = ("title", "slug", "price_sats", "is_published", "created_at")
    list_filter = ("is_published",)
    search_fields = ("title", "slug")
    prepopulated_fields = {"slug": ("title",)}
    fields = ("merchant", "title", "slug", "teaser", "body", "price_sats", "is_published")


class ProxyEndpointInline(admin.TabularInline):
    model = ProxyEndpoint
    extra = 0
    fields = ("endpoint_id", "http_method", "path", "summary", "base_price_sats")


class ProxyForm(forms.ModelForm):
    target_base_url = forms.URLField(max_length=2000, assume_scheme="https")
    documentation_url = forms.URLField(max_length=2000, required=False, assume_scheme="https")
    auth_value = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Sent upstream in the auth header. Stored encrypted; leave empty to keep.",
    )
    clear_auth_value = forms.BooleanField(required=False, label="Remove the stored auth value")

    class Meta:
        model = Proxy
        fields = (
            "merchant",
            "name",
            "description",
            "is_active",
            "target_base_url",
            "default_price_sats",
            "timeout_seconds",
            "auth_header",
            "allowed_methods",
            "allowed_paths",
            "blocked_paths",
            "manifest_enabled",
            "manifest_publicly_listed",
            "service_description",
            "documentation_url",
            "categories",
        )

    def clean_target_base_url(self):
        url = self.cleaned_data["target_base_url"]
        try:
            proxies.vet_target(url)
        except UnsafeTarget as exc:
            raise forms.ValidationError(str(exc)) from None
        return url

    def save(self, commit=True):
        proxy = super().save(commit=False)
        if self.cleaned_data.get("clear_auth_value"):
            proxy.auth_value_encrypted = ""
        elif self.cleaned_data.get("auth_value"):
            proxy.auth_value_encrypted = seal(self.cleaned_data["auth_value"])
        if not proxy.proxy_id:
            proxy.proxy_id = proxies.new_proxy_id(proxy.name)
        if commit:
            proxy.save()
        return proxy


@admin.register(Proxy)
class ProxyAdmin(MerchantScopedAdmin):
    form = ProxyForm
    inlines = [ProxyEndpointInline]
    list_display = ("name", "proxy_id", "target_base_url", "default_price_sats", "is_active")
    list_filter = ("is_active", "manifest_publicly_listed")
    search_fields = ("name", "proxy_id", "target_base_url")
    readonly_fields = ("proxy_id", "retired_at", "retired_reason", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("merchant", "name", "proxy_id", "description", "is_active")}),
        (
            "Upstream",
            {
                "fields": (
                    "target_base_url",
                    "default_price_sats",
                    "timeout_seconds",
                    "auth_header",
                    "auth_value",
                    "clear_auth_value",
                    "allowed_methods",
                    "allowed_paths",
                    "blocked_paths",
                )
            },
        ),
        (
            "Manifest",
            {
                "fields": (
                    "manifest_enabled",
                    "manifest_publicly_listed",
                    "service_description",
                    "documentation_url",
                    "categories",
                )
            },
        ),
        ("Retirement", {"fields": ("retired_at", "retired_reason", "created_at", "updated_at")}),
    )

    def get_fieldsets(self, request, obj=None):
        if self.is_operator(request):
            return self.fieldsets
        general, *rest = self.fieldsets
        fields = tuple(f for f in general[1]["fields"] if f != "merchant")
        return ((None, {"fields": fields}), *rest)


@admin.register(L402Challenge)
class L402ChallengeAdmin(MerchantScopedAdmin):
    list_display = ("public_id", "kind", "resource", "price_sats", "status", "created_at")
    list_filter = ("kind",)
    search_fields = ("public_id", "resource", "invoice__payment_hash")
    list_select_related = ("invoice",)
    fields = (
        "public_id",
        "kind",
        "resource",
        "price_sats",
        "description",
        "invoice",
        "created_at",
        "refund",
    )
    readonly_fields = fields

    @admin.display(description="Refunds")
    def refund(self, challenge):
        from refunds.admin import refund_button

        return refund_button(challenge.invoice.payment_hash, challenge.invoice.state == "paid")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
