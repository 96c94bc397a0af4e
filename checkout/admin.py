"""The merchant admin: a merchant's staff see and change only their merchant's products,
checkout invoices and API keys; the operator's superuser sees every merchant.

A staff user belongs to a merchant through `MerchantUser` and gets the model permissions
from the "Merchant staff" group (`manage.py create_merchant_user`). Scoping is done here, in
the querysets, so another merchant's object id in a URL finds nothing.
"""

from django.contrib import admin, messages
from django.db import models
from django.template.response import TemplateResponse
from django.utils.html import format_html

from .models import ApiKey, CheckoutInvoice, Merchant, MerchantUser, Product
from .selectors import in_status, merchant_of
from .services import issue_api_key, remove_product, revoke_api_key

admin.site.site_header = "Zapgate"
admin.site.site_title = "Zapgate admin"
admin.site.index_title = "Merchant admin"
# "View site" of a merchant's staff: their merchant site.
admin.site.site_url = "/dashboard/"


def request_merchant(request) -> Merchant | None:
    """The merchant the signed-in staff user administers (looked up once per request)."""
    if not hasattr(request, "_admin_merchant"):
        request._admin_merchant = merchant_of(request.user)
    return request._admin_merchant


class MerchantScopedAdmin(admin.ModelAdmin):
    """Rows of the user's own merchant only; the `merchant` field is the operator's alone."""

    # False for records whose fields are all read-only: their page has actions (redeliver,
    # refund steps), and a Save button there would do nothing.
    save_buttons = True

    def is_operator(self, request) -> bool:
        return request.user.is_superuser

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        if self.is_operator(request):
            return rows
        merchant = request_merchant(request)
        return rows.filter(merchant=merchant) if merchant else rows.none()

    def may_use(self, request) -> bool:
        return self.is_operator(request) or request_merchant(request) is not None

    def has_module_permission(self, request):
        return super().has_module_permission(request) and self.may_use(request)

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) and self.may_use(request)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and self.may_use(request)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self.may_use(request)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self.may_use(request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.save_buttons:
            extra_context = {
                **(extra_context or {}),
                "show_save": False,
                "show_save_and_continue": False,
                "show_save_and_add_another": False,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if self.is_operator(request):
            return fields
        return [f for f in fields if f != "merchant" and f != ("merchant",)]

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        return exclude if self.is_operator(request) else [*exclude, "merchant"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and self.is_operator(request):
            readonly.append("merchant")  # a row never moves to another merchant
        return readonly

    def get_list_display(self, request):
        shown = list(super().get_list_display(request))
        return [*shown, "merchant"] if self.is_operator(request) else shown

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        return [*filters, "merchant"] if self.is_operator(request) else filters

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not self.is_operator(request):
            merchant = request_merchant(request)
            if db_field.related_model is Merchant:
                kwargs["queryset"] = Merchant.objects.filter(pk=getattr(merchant, "pk", None))
            elif db_field.related_model is Product:
                kwargs["queryset"] = Product.objects.filter(merchant=merchant)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change and not self.is_operator(request):
            obj.merchant = request_merchant(request)
        super().save_model(request, obj, form, change)


@admin.register(Product)
class ProductAdmin(MerchantScopedAdmin):
    list_display = ("name", "price_label", "active", "archived", "public_id", "created_at")
    list_filter = ("active", "archived", "currency")
    search_fields = ("name", "public_id")
    fields = (
        "merchant",
        "name",
        "description",
        ("price", "currency"),
        "image_url",
        "active",
        "archived",
        "public_id",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("public_id", "created_at", "updated_at")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="Price", ordering="price")
    def price_label(self, product):
        return f"{product.price} {product.currency}"

    # Deleting follows the API's rule: a product that checkouts point at is archived, so
    # the confirmation page does not stop at those checkouts.
    def get_deleted_objects(self, objs, request):
        deleted, model_count, perms_needed, _protected = super().get_deleted_objects(objs, request)
        kept = {CheckoutInvoice._meta.verbose_name}  # not deleted: their product is archived
        return deleted, model_count, perms_needed - kept, []

    def delete_model(self, request, obj):
        if remove_product(obj) == "archived":
            messages.info(request, f"“{obj}” has checkouts, so it was archived, not deleted.")

    def delete_queryset(self, request, queryset):
        archived = [str(p) for p in queryset if remove_product(p) == "archived"]
        if archived:
            messages.info(
                request, f"Archived (they have checkouts), not deleted: {', '.join(archived)}."
            )


class CheckoutStatusFilter(admin.SimpleListFilter):
    """Status as the API reports it, derived from the Lightning invoice."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return CheckoutInvoice.Status.choices

    def queryset(self, request, queryset):
        return in_status(queryset, self.value()) if self.value() else queryset


@admin.register(CheckoutInvoice)
class CheckoutInvoiceAdmin(MerchantScopedAdmin):
    """Read-only: checkout invoices are made only through the API's service."""

    list_display = (
        "public_id",
        "description",
        "amount_label",
        "sats_label",
        "status_label",
        "user_ref",
        "email",
        "created_at",
        "paid_at",
    )
    list_select_related = ("invoice", "merchant")
    list_filter = (CheckoutStatusFilter, "created_at")
    search_fields = ("=user_ref", "=invoice__payment_hash", "email", "=public_id")
    search_help_text = "Search by userRef, payment hash, email or invoice id."
    date_hierarchy = "created_at"
    fields = (
        "public_id",
        "status_label",
        "checkout_page",
        "refund_link",
        "merchant",
        "product",
        "quantity",
        ("amount", "currency"),
        "sats_amount",
        ("rate", "rate_source"),
        "description",
        "user_ref",
        ("email", "send_email", "receipt_sent_at"),
        "redirect_url",
        "metadata",
        "created_at",
        "expires_at",
        "paid_at",
        "payment_hash",
        "bolt11",
    )
    readonly_fields = [
        name for entry in fields for name in (entry if isinstance(entry, tuple) else (entry,))
    ]

    def get_exclude(self, request, obj=None):
        return []  # every field is read-only; the operator's `merchant` is shown below

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the payment record stays

    @admin.display(description="Amount", ordering="amount")
    def amount_label(self, checkout):
        return f"{checkout.amount} {checkout.currency}"

    @admin.display(description="Sats", ordering="sats_amount")
    def sats_label(self, checkout):
        return f"{checkout.sats_amount:,}"

    @admin.display(description="Status")
    def status_label(self, checkout):
        return checkout.status

    @admin.display(description="Paid at", ordering="invoice__paid_at")
    def paid_at(self, checkout):
        return checkout.invoice.paid_at

    @admin.display(description="Expires at")
    def expires_at(self, checkout):
        return checkout.invoice.expires_at

    @admin.display(description="Payment hash")
    def payment_hash(self, checkout):
        return checkout.invoice.payment_hash

    @admin.display(description="BOLT11 invoice")
    def bolt11(self, checkout):
        return checkout.invoice.bolt11

    @admin.display(description="Refunds")
    def refund_link(self, checkout):
        from refunds.admin import refund_button

        paid = checkout.status == CheckoutInvoice.Status.PAID
        return refund_button(checkout.invoice.payment_hash, paid)

    @admin.display(description="Checkout page")
    def checkout_page(self, checkout):
        url = f"/checkout/{checkout.public_id}"
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(MerchantScopedAdmin):
    """Keys are made by the service (the key is shown once, on the page that answers the
    save, and only its hash is kept), renamed, and revoked; the hash is never shown."""

    list_display = ("name", "kind", "key_start", "created_at", "last_used_at", "revoked_at")
    list_filter = (RevokedFilter, "kind")
    search_fields = ("name", "prefix")
    actions = ["revoke_keys"]

    def get_fields(self, request, obj=None):
        if obj is None:
            fields = ["name", "kind"]
            return ["merchant", *fields] if self.is_operator(request) else fields
        return ["name", "kind", "key_start", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["kind", "key_start", "created_at", "last_used_at", "revoked_at"]

    def get_exclude(self, request, obj=None):
        return []  # get_fields lists exactly what is shown; key_hash never is

    def has_delete_permission(self, request, obj=None):
        # Merchants revoke; only the operator deletes (a merchant with its keys, say).
        return self.is_operator(request)

    @admin.display(description="Key starts with")
    def key_start(self, key):
        return f"{key.prefix}…"

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        merchant = obj.merchant if self.is_operator(request) else request_merchant(request)
        key, raw = issue_api_key(merchant, obj.kind, obj.name)
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False
        obj.raw_key = raw  # for response_add only; never stored

    def response_add(self, request, obj, post_url_continue=None):
        """Show the new key on the page that answers the save: not in a message, which
        would keep it in the session or a cookie until it is read."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Copy the new API key now",
            "key": obj,
            "raw_key": obj.raw_key,
        }
        response = TemplateResponse(request, "admin/checkout/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            revoke_api_key(key)
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)


class MerchantUserInline(admin.TabularInline):
    model = MerchantUser
    extra = 0
    autocomplete_fields = ("user",)
    verbose_name = "staff user"


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    """The operator's: merchants are made and linked to staff users here (or by command)."""

    list_display = ("name", "public_id", "email", "created_at")
    search_fields = ("name", "public_id", "email")
    readonly_fields = ("public_id", "created_at")
    inlines = [MerchantUserInline]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
