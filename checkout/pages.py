"""The buyer-facing pages: the hosted checkout page, its status endpoint, /privacy, /terms.

The page hears of the payment on a WebSocket (checkout.consumers, pushed by realtime.push)
and polls the status endpoint once a second only while the socket is not open: a poll is
one indexed query and works behind any proxy, so the page turns paid either way.
"""

from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import segno
from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from config.problems import PROBLEM_CONTENT_TYPE as PROBLEM
from config.problems import Problem, ProblemSerializer

from .models import CheckoutInvoice, Product
from .selectors import checkout_for_page, checkout_for_status
from .serializers import format_amount

# Seconds the paid page waits before it follows the merchant's redirectUrl.
REDIRECT_DELAY_SECONDS = 5

# The page needs nothing from another origin except, perhaps, the product's image.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€"}


def format_sats(sats: int) -> str:
    return f"{sats:,} sat" if sats == 1 else f"{sats:,} sats"


def format_fiat(amount: Decimal, currency: str) -> str:
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{amount:,.2f}" if symbol else f"{amount:,.2f} {currency}"


def lightning_qr_svg(bolt11: str, title: str = "QR code of the Lightning invoice") -> str:
    """`lightning:` + the upper-case invoice as an inline SVG QR code. Upper case lets the
    invoice use the QR alphanumeric mode (a smaller, easier-to-scan code); the scheme stays
    lower case in its own segment, as wallets expect."""
    qr = segno.make(["lightning:", bolt11.upper()], error="m", micro=False)
    return qr.svg_inline(
        scale=4,
        border=4,
        dark="#000",
        light="#fff",
        omitsize=True,
        svgclass="qr-code",
        title=title,
    )


def is_demo(invoice) -> bool:
    return invoice.backend == "devnode"


def dev_wallet_enabled() -> bool:
    return settings.DEV_MODE and settings.LIGHTNING_BACKEND == "devnode"


def _safe_redirect_url(url: str) -> str:
    """Only http(s) URLs are followed: never `javascript:` or other schemes."""
    return url if url and urlsplit(url).scheme in ("http", "https") else ""


def _restart_url(product: Product | None) -> str:
    if product is None or not product.active or product.archived:
        return ""
    return f"/api/checkout/products/{product.public_id}/checkout"


_timestamp = serializers.DateTimeField()  # ISO 8601 in UTC with "Z", as the rest of the API


def status_body(checkout: CheckoutInvoice) -> dict:
    invoice = checkout.invoice
    return {
        "invoiceId": checkout.public_id,
        "status": checkout.status,
        "amount": format_amount(checkout.amount, checkout.currency),
        "currency": checkout.currency,
        "lightningInvoice": invoice.bolt11,
        "expiresAt": _timestamp.to_representation(invoice.expires_at),
        "isDemo": is_demo(invoice),
        "satsAmount": checkout.sats_amount,
        "paidAt": _timestamp.to_representation(invoice.paid_at) if invoice.paid_at else None,
    }


def _with_csp(response):
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
def checkout_page(request, invoice_id):
    try:
        checkout = checkout_for_page(invoice_id)
    except Http404:
        return _with_csp(render(request, "checkout/not_found.html", status=404))
    invoice = checkout.invoice
    status = checkout.status
    amount_is_fiat = checkout.currency != Product.Currency.SAT
    context = {
        "checkout": checkout,
        "merchant": checkout.merchant,
        "product": checkout.product,
        "title": checkout.description or (checkout.product.name if checkout.product else ""),
        "status": status,
        "fiat": format_fiat(checkout.amount, checkout.currency) if amount_is_fiat else "",
        "sats": format_sats(checkout.sats_amount),
        "bolt11": invoice.bolt11,
        "lightning_uri": f"lightning:{invoice.bolt11}",
        "qr_svg": lightning_qr_svg(invoice.bolt11) if status == "unpaid" else "",
        "is_demo": is_demo(invoice),
        "dev_wallet": dev_wallet_enabled() and is_demo(invoice),
        "redirect_url": _safe_redirect_url(checkout.redirect_url),
        "restart_url": _restart_url(checkout.product),
        "page_data": {
            "invoiceId": checkout.public_id,
            "status": status,
            "statusUrl": f"/checkout/{checkout.public_id}/status",
            "socketUrl": f"/ws/checkout/{checkout.public_id}",
            "expiresAt": invoice.expires_at.isoformat(),
            "serverNow": timezone.now().isoformat(),
            "bolt11": invoice.bolt11,
            "redirectUrl": _safe_redirect_url(checkout.redirect_url),
            "redirectDelay": REDIRECT_DELAY_SECONDS,
            "restartUrl": _restart_url(checkout.product),
            "quantity": checkout.quantity,
            "devPayUrl": "/api/dev/pay",
        },
    }
    response = render(request, "checkout/page.html", context)
    response["Cache-Control"] = "no-store"
    return _with_csp(response)


class CheckoutStatusSerializer(serializers.Serializer):
    invoiceId = serializers.CharField()
    status = serializers.ChoiceField(choices=CheckoutInvoice.Status.choices)
    amount = serializers.DecimalField(max_digits=18, decimal_places=2)
    currency = serializers.ChoiceField(choices=Product.Currency.choices)
    lightningInvoice = serializers.CharField(help_text="The BOLT11 invoice.")
    expiresAt = serializers.DateTimeField()
    isDemo = serializers.BooleanField(help_text="True when the invoice is on the dev node.")
    satsAmount = serializers.IntegerField()
    paidAt = serializers.DateTimeField(allow_null=True)


class CheckoutStatusView(APIView):
    """Public: the state of a checkout, polled by the hosted page every second."""

    @extend_schema(
        operation_id="checkout_status",
        tags=["checkout page"],
        summary="The status of a checkout, for the hosted page (public, no key)",
        auth=[],
        responses={
            200: CheckoutStatusSerializer,
            (404, PROBLEM): OpenApiResponse(
                ProblemSerializer, description="No checkout invoice with this id."
            ),
        },
    )
    def get(self, request, invoiceId):
        checkout = checkout_for_status(invoiceId)
        if checkout is None:
            raise Problem(404, "not_found", f"No checkout invoice with id {invoiceId}.")
        return Response(status_body(checkout), headers={"Cache-Control": "no-store"})


def _operator_text(path_setting: str) -> str:
    """The operator's own text from the file a setting names; empty for the default text."""
    path = getattr(settings, path_setting)
    return Path(path).read_text(encoding="utf-8") if path else ""


@require_GET
def privacy(request):
    context = {"title": "Privacy", "text": _operator_text("PRIVACY_POLICY_FILE")}
    return _with_csp(render(request, "checkout/privacy.html", context))


@require_GET
def terms(request):
    context = {"title": "Terms", "text": _operator_text("TERMS_OF_SERVICE_FILE")}
    return _with_csp(render(request, "checkout/terms.html", context))
