from django.contrib import admin

from .models import Invoice, InvoiceTransition, WatcherState


class TransitionInline(admin.TabularInline):
    model = InvoiceTransition
    extra = 0
    can_delete = False
    readonly_fields = ("from_state", "to_state", "at", "settle_index")


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("payment_hash", "amount_msat", "state", "created_at", "paid_at", "backend")
    list_filter = ("state", "backend", "hold")
    search_fields = ("payment_hash", "memo")
    readonly_fields = [f.name for f in Invoice._meta.fields]
    inlines = [TransitionInline]

    def has_add_permission(self, request):
        return False  # invoices are made only through the node


@admin.register(WatcherState)
class WatcherStateAdmin(admin.ModelAdmin):
    list_display = ("node_key", "settle_index", "last_event_at", "lease_holder", "lease_expires_at")
    readonly_fields = list_display
