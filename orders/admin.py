"""Orders in the admin, for a merchant's staff: the products resellers order (with their
stock of codes), the resellers, and their orders (read-only). Credentials are issued through
the API or `manage.py create_customer` (the secret is shown once)."""

from django.contrib import admin

from checkout.admin import MerchantScopedAdmin

from .models import Customer, Operator, Order, StockCode


class StockCodeInline(admin.TabularInline):
    model = StockCode
    fields = ("code", "order", "created_at")
    readonly_fields = ("order", "created_at")
    extra = 3


@admin.register(Operator)
class OperatorAdmin(MerchantScopedAdmin):
    list_display = ("slug", "name", "currency", "ranged", "delivery", "active")
    list_filter = ("active", "delivery")
    search_fields = ("slug", "name")
    inlines = [StockCodeInline]


@admin.register(Customer)
class CustomerAdmin(MerchantScopedAdmin):
    list_display = ("name", "public_id", "api_key", "created_at", "revoked_at")
    fields = ("public_id", "name", "api_key", "wallet", "created_at", "revoked_at")
    readonly_fields = ("public_id", "name", "api_key", "wallet", "created_at")

    def has_add_permission(self, request):
        return False  # POST /api/orders/customers or manage.py create_customer


@admin.register(Order)
class OrderAdmin(MerchantScopedAdmin):
    list_display = (
        "public_id",
        "customer",
        "operator",
        "value_package",
        "price_sats",
        "status",
        "created_at",
    )
    list_filter = ("status", "payment_method", "created_at")
    search_fields = ("=public_id", "=user_ref", "email")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Order._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
