from django.contrib import admin, messages

from . import services
from .models import Agent, Agreement, Attestation, Capability, ServiceRequest


class CapabilityInline(admin.TabularInline):
    model = Capability
    extra = 0
    can_delete = False
    fields = ("service_id", "price_sats", "l402_endpoint", "deleted_at", "updated_at")
    readonly_fields = fields
    show_change_link = True


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("pubkey", "name", "owner", "is_verified", "is_active", "created_at")
    list_filter = ("is_active", "is_verified")
    search_fields = ("pubkey", "name", "public_id")
    fields = (
        "public_id",
        "pubkey",
        "name",
        "description",
        "owner",
        "is_active",
        "is_verified",
        "verified_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = (
        "public_id",
        "pubkey",
        "owner",
        "is_active",
        "is_verified",
        "verified_at",
        "created_at",
        "updated_at",
    )
    inlines = [CapabilityInline]
    actions = ["deactivate", "reactivate"]

    def has_add_permission(self, request):
        return False  # agents register themselves over the API

    @admin.action(description="Deactivate: hide from discovery and refuse their writes")
    def deactivate(self, request, queryset):
        for agent in queryset:
            services.set_agent_active(agent, False)
        self.message_user(request, f"{queryset.count()} agent(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Reactivate")
    def reactivate(self, request, queryset):
        for agent in queryset:
            services.set_agent_active(agent, True)
        self.message_user(request, f"{queryset.count()} agent(s) reactivated.", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the agents made; the operator reads them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Capability)
class CapabilityAdmin(ReadOnlyAdmin):
    list_display = ("service_id", "agent", "price_sats", "l402_endpoint", "deleted_at")
    list_filter = (("deleted_at", admin.EmptyFieldListFilter),)
    search_fields = ("service_id", "event_id", "agent__pubkey", "agent__name")


@admin.register(ServiceRequest)
class ServiceRequestAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "provider", "requester", "budget_sats", "created_at")
    search_fields = ("event_id", "provider__pubkey", "requester__pubkey")


@admin.register(Agreement)
class AgreementAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "provider", "requester", "price_sats", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("event_id", "provider__pubkey", "requester__pubkey")


@admin.register(Attestation)
class AttestationAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "reviewer", "subject", "rating", "created_at")
    list_filter = ("rating",)
    search_fields = ("event_id", "reviewer__pubkey", "subject__pubkey")
