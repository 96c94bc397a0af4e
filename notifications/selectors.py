"""Reads for the merchant's emails: what a sale was, and one day's figures."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from checkout.models import CheckoutInvoice, Merchant
from dashboard.selectors import invoice_counts
from lightning.models import Invoice
from orders.models import Order
from shopify_bridge.models import ShopifyOrder
from wallets.models import Payment, Wallet

# What an invoice of each purpose paid for, when no app-specific record says more.
PURPOSES = {
    "checkout": "Checkout",
    "shopify": "Shopify order",
    "l402": "L402 purchase",
    "order": "Reseller order",
    "wallet": "Wallet invoice",
}


@dataclass(frozen=True)
class Sale:
    what: str  # one line: the subject names it
    reference: str  # the id the merchant knows it by (inv_..., an order's id, else the hash)
    fiat: str = ""  # "12.50 USD" when it was priced in a fiat currency
    details: tuple[tuple[str, str], ...] = ()  # more lines: product, quantity, ...
    link: str = ""  # the merchant site's page for it


def sale_of(invoice: Invoice) -> Sale:
    """What `invoice` paid for, as the app that sold it recorded it."""
    if invoice.purpose == "checkout":
        checkout = CheckoutInvoice.objects.select_related("product").filter(invoice=invoice).first()
        if checkout is not None:
            return _checkout_sale(checkout)
    elif invoice.purpose == "shopify":
        order = ShopifyOrder.objects.filter(invoice=invoice).first()
        if order is not None:
            lines = [f"{line.quantity} × {line.title}" for line in order.lines.all()]
            return Sale(
                what=f"Shopify order {order.public_id}",
                reference=order.public_id,
                fiat=f"{order.total_usd:.2f} USD",
                details=tuple(("Item", line) for line in lines),
            )
    elif invoice.purpose == "order":
        order = Order.objects.filter(invoice=invoice).first()
        if order is not None:
            return Sale(what=f"Reseller order: {invoice.memo}", reference=order.public_id)
    label = PURPOSES.get(invoice.purpose, invoice.purpose or "Payment")
    return Sale(
        what=f"{label}: {invoice.memo}" if invoice.memo else label,
        reference=invoice.payment_hash,
    )


def _checkout_sale(checkout: CheckoutInvoice) -> Sale:
    product = checkout.product
    name = checkout.description or (product.name if product else "") or "Checkout"
    what = f"{checkout.quantity} × {name}" if checkout.quantity != 1 else name
    details = []
    if product is not None:
        details.append(("Product", f"{product.name} ({product.public_id})"))
    details.append(("Quantity", str(checkout.quantity)))
    if checkout.user_ref:
        details.append(("Reference", checkout.user_ref))
    return Sale(
        what=what,
        reference=checkout.public_id,
        fiat=f"{checkout.amount:.2f} {checkout.currency}" if checkout.currency != "SAT" else "",
        details=tuple(details),
        link=settings.PUBLIC_BASE_URL
        + reverse("dashboard:invoice", kwargs={"invoice_id": checkout.public_id}),
    )


@dataclass
class DayFigures:
    day: date
    count: int = 0
    sats: int = 0
    fiat: dict[str, Decimal] = field(default_factory=dict)  # per currency, sorted
    top_products: list[dict] = field(default_factory=list)  # name, units, sats
    open_invoices: int = 0


def day_figures(merchant: Merchant, day: date, top: int = 3) -> DayFigures:
    """The merchant's sales paid on `day` (UTC): every invoice its wallet received (as the
    sale notices count them), the fiat they were priced in, its best products; and how many
    of its checkouts are open now."""
    start = timezone.make_aware(datetime.combine(day, time.min))
    paid_that_day = {
        "invoice__state": Invoice.State.PAID,
        "invoice__paid_at__gte": start,
        "invoice__paid_at__lt": start + timedelta(days=1),
    }
    totals = Payment.objects.filter(
        wallet__merchant=merchant, wallet__owner=Wallet.Owner.MERCHANT, **paid_that_day
    ).aggregate(
        count=Count("pk"),
        msat=Sum(Coalesce("invoice__amount_paid_msat", "invoice__amount_msat")),
    )
    checkouts = CheckoutInvoice.objects.filter(merchant=merchant, **paid_that_day)
    fiat: dict[str, Decimal] = defaultdict(Decimal)
    for row in (
        checkouts.exclude(currency="SAT")
        .values("currency")
        .annotate(amount=Sum("amount"))
        .order_by()
    ):
        fiat[row["currency"]] += row["amount"]
    shopify_usd = ShopifyOrder.objects.filter(store__merchant=merchant, **paid_that_day).aggregate(
        total=Sum("total_usd")
    )["total"]
    if shopify_usd:
        fiat["USD"] += shopify_usd
    top_products = list(
        checkouts.filter(product__isnull=False)
        .values("product__public_id", "product__name")
        .annotate(units=Sum("quantity"), sats=Sum("sats_amount"))
        .order_by("-sats", "product__name")[:top]
    )
    return DayFigures(
        day=day,
        count=totals["count"],
        sats=(totals["msat"] or 0) // 1000,
        fiat=dict(sorted(fiat.items())),
        top_products=top_products,
        open_invoices=invoice_counts(merchant)["unpaid"],
    )
