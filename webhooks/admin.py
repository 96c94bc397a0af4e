"""Webhooks in the merchant admin: endpoints (a disabled one says why), deliveries with each
attempt, and the redeliver action. Scoped to the staff user's merchant like checkout's."""

from django.contrib import admin, messages
from django.utils.html import format_html

from checkout.admin import MerchantScopedAdmin, request_merchant
from config.problems import Problem

from . import services
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(MerchantScopedAdmin):
    """Endpoints are added over the API (which shows the secret once and vets the URL);
    here a merchant sees them, enables or disables them and sends a test event."""

    list_display = ("url", "state", "events", "description", "public_id", "created_at")
    list_filter = ("enabled",)
    search_fields = ("url", "description", "=public_id")
    fields = (
        "public_id",
        "url",
        "events",
        "description",
        "enabled",
        "state",
        "failing_since",
        "created_at",
        "updated_at",
    )
    readonly_fields = (
        "public_id",
        "url",
        "events",
        "state",
        "failing_since",
        "created_at",
        "updated_at",
    )
    actions = ["enable_endpoints", "send_test_events"]

    def get_exclude(self, request, obj=None):
        return []  # `fields` lists what is shown; the secrets never are

    def has_add_permission(self, request):
        return False

    @admin.display(description="State")
    def state(self, endpoint):
        if endpoint.enabled:
            return "enabled"
        if endpoint.disabled_reason:
            return format_html(
                '<strong style="color:#b00">disabled: {}</strong>', endpoint.disabled_reason
            )
        return "disabled"

    def changelist_view(self, request, extra_context=None):
        disabled = self.get_queryset(request).filter(enabled=False).exclude(disabled_reason="")
        for endpoint in disabled[:5]:
            messages.warning(
                request,
                f"The webhook endpoint {endpoint.url} was disabled: {endpoint.disabled_reason} "
                "Fix the receiver, then enable it again.",
            )
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        services.update_endpoint(
            WebhookEndpoint.objects.get(pk=obj.pk),
            **{name: form.cleaned_data[name] for name in form.changed_data},
        )

    @admin.action(description="Enable the selected endpoints", permissions=["change"])
    def enable_endpoints(self, request, queryset):
        for endpoint in queryset.filter(enabled=False):
            services.update_endpoint(endpoint, enabled=True)
        self.message_user(request, "Enabled.", messages.SUCCESS)

    @admin.action(description="Send a test event to the selected endpoints", permissions=["change"])
    def send_test_events(self, request, queryset):
        for endpoint in queryset:
            services.send_test_event(endpoint)
        self.message_user(request, "Test events queued.", messages.SUCCESS)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = readonly_fields = (
        "number",
        "started_at",
        "status_code",
        "duration_ms",
        "error",
        "response_excerpt",
    )
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(MerchantScopedAdmin):
    save_buttons = False  # every field is read-only: redeliver is the one action
    list_display = (
        "public_id",
        "event_type",
        "destination",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event__type", "created_at")
    list_select_related = ("event", "endpoint", "event__merchant")
    search_fields = ("=public_id", "=event__public_id", "endpoint__url", "url")
    fields = readonly_fields = (
        "public_id",
        "event_type",
        "event_id",
        "destination",
        "status",
        "attempt_count",
        "next_attempt_at",
        "delivered_at",
        "last_status_code",
        "last_error",
        "created_at",
        "body",
    )
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def get_queryset(self, request):
        rows = admin.ModelAdmin.get_queryset(self, request)
        if self.is_operator(request):
            return rows
        merchant = request_merchant(request)
        return rows.filter(event__merchant=merchant) if merchant else rows.none()

    def get_exclude(self, request, obj=None):
        return []

    def get_list_filter(self, request):
        return self.list_filter

    def get_list_display(self, request):
        shown = list(self.list_display)
        return [*shown, "merchant"] if self.is_operator(request) else shown

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        pass  # nothing here is edited by hand; saving could undo a worker's lease

    @admin.display(description="Merchant")
    def merchant(self, delivery):
        return delivery.event.merchant

    @admin.display(description="Event", ordering="event__type")
    def event_type(self, delivery):
        return delivery.event.type

    @admin.display(description="Event id")
    def event_id(self, delivery):
        return delivery.event.public_id

    @admin.display(description="Sent to")
    def destination(self, delivery):
        return delivery.endpoint.url if delivery.endpoint_id else f"{delivery.url} (webhookUrl)"

    @admin.display(description="Body")
    def body(self, delivery):
        return delivery.event.body

    @admin.action(description="Redeliver the selected deliveries", permissions=["change"])
    def redeliver(self, request, queryset):
        done = 0
        for delivery in queryset:
            try:
                services.redeliver(delivery)
                done += 1
            except Problem as exc:
                self.message_user(request, f"{delivery}: {exc.detail}", messages.WARNING)
        if done:
            self.message_user(request, f"Queued {done} delivery(ies) again.", messages.SUCCESS)
