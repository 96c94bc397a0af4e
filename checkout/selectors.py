"""Reads for the hosted checkout page and the merchant admin (services write, selectors read)."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.shortcuts import get_object_or_404
from django.utils import timezone

from config.prepared import Prepared, columns
from lightning.models import Invoice

from .models import ApiKey, CheckoutInvoice, Merchant, Product


def checkout_for_page(invoice_id: str) -> CheckoutInvoice:
    """The checkout with everything the hosted page shows, in one query (404 if unknown)."""
    return get_object_or_404(
        CheckoutInvoice.objects.select_related("merchant", "invoice", "product"),
        public_id=invoice_id,
    )


_status_row = Prepared(
    lambda invoice_id: CheckoutInvoice.objects.filter(public_id=invoice_id).values_list(
        "public_id",
        "amount",
        "currency",
        "sats_amount",
        "invoice__bolt11",
        "invoice__state",
        "invoice__expires_at",
        "invoice__paid_at",
        "invoice__backend",
    )[:1]
)


def checkout_for_status(invoice_id: str) -> CheckoutInvoice | None:
    """The checkout and its Lightning invoice with what the status shows, in one query by
    unique index (prepared: building it cost 30 times what running it does). Every open
    checkout page that is not on its socket asks for this once a second. The instances
    carry those fields only: they are for reading."""
    row = _status_row.first(invoice_id)
    if row is None:
        return None
    public_id, amount, currency, sats, bolt11, state, expires_at, paid_at, backend = row
    checkout = CheckoutInvoice(
        public_id=public_id, amount=amount, currency=currency, sats_amount=sats
    )
    checkout.invoice = Invoice(
        bolt11=bolt11, state=state, expires_at=expires_at, paid_at=paid_at, backend=backend
    )
    return checkout


_active_key = Prepared(
    lambda key_hash: (
        ApiKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True)
        .values_list(*columns(ApiKey), *columns(Merchant, "merchant__"))
        .order_by()[:1]
    )
)


def active_api_key(key_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash, with its merchant: every API request's first
    query (prepared, as the status read)."""
    found = _active_key.joined((ApiKey, Merchant), key_hash)
    if not found:
        return None
    key, key.merchant = found[0]
    return key


def in_status(checkouts, status: str):
    """Checkouts in one status (unpaid, paid, expired), which is derived from the Lightning
    invoice as `CheckoutInvoice.status` derives it."""
    open_and_valid = Q(invoice__state=Invoice.State.OPEN, invoice__expires_at__gt=timezone.now())
    if status == CheckoutInvoice.Status.PAID:
        return checkouts.filter(invoice__state=Invoice.State.PAID)
    if status == CheckoutInvoice.Status.UNPAID:
        return checkouts.filter(open_and_valid)
    if status == CheckoutInvoice.Status.EXPIRED:
        return checkouts.exclude(invoice__state=Invoice.State.PAID).exclude(open_and_valid)
    raise ValueError(f"unknown checkout status {status!r}")


def merchant_of(user) -> Merchant | None:
    """The merchant a staff user administers (None for the operator and for unlinked users)."""
    link = getattr(user, "merchant_link", None)
    return link.merchant if link is not None else None


@dataclass(frozen=True)
class PaidSummary:
    count: int
    sats: int


def paid_summary(merchant: Merchant | None, now=None) -> dict[str, PaidSummary]:
    """Paid checkouts and their revenue in sats since midnight today (UTC, the server's time
    zone) and over the last 7 days, for one merchant or, with None, for all of them."""
    now = now or timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    week = now - timedelta(days=7)
    paid = CheckoutInvoice.objects.filter(
        invoice__state=Invoice.State.PAID, invoice__paid_at__gte=min(today, week)
    )
    if merchant is not None:
        paid = paid.filter(merchant=merchant)
    in_today, in_week = Q(invoice__paid_at__gte=today), Q(invoice__paid_at__gte=week)
    totals = paid.aggregate(
        today_count=Count("pk", filter=in_today),
        today_sats=Sum("sats_amount", filter=in_today),
        week_count=Count("pk", filter=in_week),
        week_sats=Sum("sats_amount", filter=in_week),
    )
    return {
        "today": PaidSummary(totals["today_count"], totals["today_sats"] or 0),
        "week": PaidSummary(totals["week_count"], totals["week_sats"] or 0),
    }


# --- The merchant API (checkout.views) -------------------------------------------------

CHECKOUT_STATUSES = tuple(CheckoutInvoice.Status.values)


def products_of(merchant: Merchant, active: bool | None = None):
    """A merchant's products, newest first; archived ones are gone from the API."""
    products = Product.objects.filter(merchant=merchant, archived=False)
    if active is not None:
        products = products.filter(active=active)
    return products.order_by("-created_at", "-pk")


def product_of(merchant: Merchant, product_id: str) -> Product | None:
    return Product.objects.filter(merchant=merchant, public_id=product_id, archived=False).first()


def checkouts_of(merchant: Merchant, status: str | None = None):
    """A merchant's checkouts, newest first, optionally only those in one status."""
    checkouts = CheckoutInvoice.objects.filter(merchant=merchant).select_related(
        "invoice", "product"
    )
    if status is not None:
        checkouts = in_status(checkouts, status)
    return checkouts.order_by("-created_at", "-pk")


def checkout_of(merchant: Merchant, invoice_id: str) -> CheckoutInvoice | None:
    return (
        CheckoutInvoice.objects.select_related("invoice", "product")
        .filter(merchant=merchant, public_id=invoice_id)
        .first()
    )
