"""The operator's view of wallets: read-only (money moves only through the services)."""

from django.contrib import admin

from .models import LedgerEntry, Payment, Wallet


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Wallet)
class WalletAdmin(ReadOnly):
    list_display = ["public_id", "name", "merchant", "balance_msat", "created_at"]
    search_fields = ["public_id", "name"]


@admin.register(Payment)
class PaymentAdmin(ReadOnly):
    list_display = ["payment_hash", "wallet", "direction", "amount_msat", "fee_msat", "status"]
    list_filter = ["direction", "status", "tag"]
    search_fields = ["payment_hash"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnly):
    list_display = ["id", "wallet", "kind", "amount_msat", "payment", "created_at"]
    list_filter = ["kind"]
