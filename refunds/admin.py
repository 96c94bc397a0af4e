"""Refunds in the admin: a merchant's staff refund a paid checkout, Shopify order or L402
purchase from its page (the "Refund" button), see their refunds, and reissue or withdraw an
unclaimed link. The rules are refunds.services'; the operator's superuser sees every
merchant's."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from checkout.admin import MerchantScopedAdmin, request_merchant
from config.problems import Problem
from wallets.models import Payment

from . import services
from .models import Refund
from .serializers import claim_url


class RefundForm(forms.Form):
    amount_sats = forms.IntegerField(
        label="Amount (sats)",
        min_value=1,
        required=False,
        help_text="Leave empty to refund all that is left.",
    )
    reason = forms.CharField(max_length=500, required=False)
    refund_address = forms.CharField(
        label="Refund address",
        max_length=2000,
        required=False,
        help_text="The buyer's Lightning address or LNURL-pay (default: the checkout's). "
        "Without one, the buyer gets a refund link.",
    )


@admin.register(Refund)
class RefundAdmin(MerchantScopedAdmin):
    save_buttons = False  # every field is read-only: the page has actions, not a Save button
    list_display = (
        "public_id",
        "source",
        "source_id",
        "sats",
        "state",
        "reason",
        "created_at",
        "completed_at",
    )
    list_filter = ("state", "source", "created_at")
    search_fields = ("=public_id", "=source_id", "=payment_hash", "email")
    actions = ["reissue_links", "cancel_refunds"]
    fields = (
        "public_id",
        "state",
        "failure_reason",
        "source",
        "source_id",
        "sats",
        ("fiat_amount", "currency", "rate", "rate_choice"),
        "reason",
        "refund_address",
        "link",
        "claim_expires_at",
        "email",
        "payment_hash",
        "preimage",
        "created_at",
        "completed_at",
    )
    readonly_fields = [
        name for entry in fields for name in (entry if isinstance(entry, tuple) else (entry,))
    ]

    def get_exclude(self, request, obj=None):
        return []

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields

    def has_add_permission(self, request):
        return False  # made from a paid checkout's page (or the API)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Sats", ordering="amount_msat")
    def sats(self, refund):
        return f"{refund.amount_msat // 1000:,}"

    @admin.display(description="Refund link")
    def link(self, refund):
        if refund.state != Refund.State.CLAIMABLE or not refund.claim_token:
            return "-"
        url = claim_url(refund)
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)

    @admin.display(description="Preimage (proof of payment)")
    def preimage(self, refund):
        return refund.payout.preimage if refund.payout_id else "-"

    @admin.action(
        description="Reissue the refund link (new link, new expiry)", permissions=["change"]
    )
    def reissue_links(self, request, queryset):
        self._each(request, queryset, services.reissue, "reissued")

    @admin.action(description="Withdraw refunds not yet being paid", permissions=["change"])
    def cancel_refunds(self, request, queryset):
        self._each(request, queryset, services.cancel, "withdrawn")

    def _each(self, request, queryset, action, done):
        for refund in queryset:
            try:
                action(refund)
                self.message_user(request, f"{refund.public_id}: {done}.")
            except Problem as exc:
                self.message_user(request, f"{refund.public_id}: {exc.detail}", messages.ERROR)

    def get_urls(self):
        refund_view = self.admin_site.admin_view(self.refund_payment)
        return [
            path("payment/<str:payment_hash>/", refund_view, name="refunds_refund_payment"),
            *super().get_urls(),
        ]

    def refund_payment(self, request, payment_hash):
        """Refund a paid payment of the staff user's merchant: a checkout, a Shopify order,
        an L402 purchase (their admin pages link here with the invoice's payment hash)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        payments = Payment.objects.select_related("wallet__merchant", "invoice").filter(
            payment_hash=payment_hash.lower(), direction=Payment.Direction.IN
        )
        if not self.is_operator(request):
            payments = payments.filter(wallet__merchant=request_merchant(request))
        payment = payments.first()
        if payment is None:
            raise PermissionDenied
        merchant = payment.wallet.merchant
        source, source_id, *_ = services.describe_source(payment)
        form = RefundForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                refund = services.create_refund(
                    merchant,
                    services.check_received(merchant, payment, f"{source} {source_id}"),
                    amount_sats=form.cleaned_data["amount_sats"],
                    reason=form.cleaned_data["reason"],
                    refund_address=form.cleaned_data["refund_address"],
                )
                if refund.state == Refund.State.PENDING:
                    refund = services.pay_out(refund.pk)
            except Problem as exc:
                form.add_error(None, exc.detail)
            else:
                self.message_user(request, f"Refund {refund.public_id}: {refund.state}.")
                return redirect(reverse("admin:refunds_refund_change", args=[refund.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund {source} {source_id}",
            "payment": payment,
            "source": source,
            "source_id": source_id,
            "paid_sats": payment.amount_msat // 1000,
            "refunded_sats": services.refunded_msat(payment) // 1000,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/refunds/refund_payment.html", context)


def refund_button(payment_hash: str, paid: bool):
    """The "Refund" button of a paid sale's admin page (checkout, Shopify order, L402)."""
    if not paid:
        return "-"
    url = reverse("admin:refunds_refund_payment", args=[payment_hash])
    return format_html('<a class="button" href="{}">Refund</a>', url)
