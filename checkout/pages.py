"""The buyer-facing pages: the hosted checkout page, its status endpoint, /privacy, /terms.

The page hears of the payment on a WebSocket (checkout.consumers, pushed by realtime.push)
and polls the status endpoint once a second only while the socket is not open: a poll is
one indexed query and works behind any proxy, so the page turns paid either way. Once paid,
the page shows a receipt; a page that turns paid while open fetches it from the page's own
URL (`?fragment=receipt`).

The buyer's pages speak the buyer's language (settings.LANGUAGES): `?lang=` (kept in a
cookie), else the cookie, else the browser's Accept-Language. The language is switched on
only inside these views (`buyer_page`), never globally: the JSON API stays English.
Amounts and dates are formatted for that language with Babel.
"""

import re
import secrets
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal
from functools import wraps
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import segno
from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal
from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
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

# The page needs nothing from another origin except, perhaps, the product's image and the
# merchant's logo. A page with a brand colour adds one nonce for its one <style> element.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

# The languages' own names, for the picker (a buyer looks for their language by its name).
LANGUAGE_NAMES = {
    "en": "English",
    "de": "Deutsch",
    "es": "Español",
    "fr": "Français",
    "pt": "Português",
}
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600
BRAND_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def babel_locale(language: str | None = None) -> str:
    """Babel's locale name for a Django language code (the active one by default)."""
    return translation.to_locale(language or translation.get_language() or "en")


def format_sats(sats: int, locale: str = "en") -> str:
    number = format_decimal(sats, locale=locale)
    return f"{number} sat" if sats == 1 else f"{number} sats"


def format_fiat(amount: Decimal, currency: str, locale: str = "en") -> str:
    return format_currency(amount, currency, locale=locale)


def format_paid_at(moment, locale: str = "en") -> str:
    return format_datetime(moment, format="long", tzinfo=UTC, locale=locale)


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


def _with_csp(response, nonce: str = ""):
    policy = CONTENT_SECURITY_POLICY
    if nonce:
        policy = policy.replace("style-src 'self'", f"style-src 'self' 'nonce-{nonce}'")
    response["Content-Security-Policy"] = policy
    response["Referrer-Policy"] = "no-referrer"
    return response


# --- branding ----------------------------------------------------------------------------


def _luminance(colour: str) -> float:
    """WCAG 2 relative luminance of '#rrggbb'."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_colour_on(background: str) -> str:
    """Black or white, whichever reads better on the background. One of the two is always
    at least 4.58:1 (WCAG AA for normal text) against any colour."""
    white, black = "#ffffff", "#000000"
    on_white = contrast_ratio(background, white)
    return white if on_white >= contrast_ratio(background, black) else black


def branding(merchant) -> dict:
    """The merchant's logo and accent colour for a buyer page. The colour comes in one
    <style> element allowed by a nonce made for this response alone."""
    colour = merchant.brand_colour if merchant and merchant.brand_colour else ""
    colour = colour.lower() if BRAND_COLOUR.match(colour) else ""
    logo = merchant.logo_url if merchant and merchant.logo_url else ""
    logo = logo if urlsplit(logo).scheme == "https" else ""  # what the policy lets load
    css = f":root{{--brand:{colour};--brand-text:{text_colour_on(colour)}}}" if colour else ""
    return {
        "logo_url": logo,
        "brand_css": css,
        "csp_nonce": secrets.token_urlsafe(18) if css else "",
    }


def back_to_shop_url(merchant, checkout=None) -> str:
    """Where "go back to the shop" leads: the merchant's website, else the checkout's own
    redirect URL (http(s) only), else nowhere (the page says it in words)."""
    website = _safe_redirect_url(merchant.website_url) if merchant else ""
    return website or (_safe_redirect_url(checkout.redirect_url) if checkout else "")


# --- language ----------------------------------------------------------------------------


def _supported() -> dict:
    return dict(settings.LANGUAGES)


def buyer_language(request) -> tuple[str, bool]:
    """The buyer's language and whether this request chose it (`?lang=`)."""
    chosen = request.GET.get("lang", "")
    if chosen in _supported():
        return chosen, True
    language = translation.get_language_from_request(request)  # cookie, Accept-Language
    try:
        return translation.get_supported_language_variant(language), False
    except LookupError:
        return "en", False


def language_links(request, current: str) -> list[dict]:
    query = {k: v for k, v in request.GET.items() if k not in ("lang", "fragment")}
    return [
        {
            "code": code,
            "name": LANGUAGE_NAMES.get(code, name),
            "url": f"{request.path}?{urlencode({**query, 'lang': code})}",
            "current": code == current,
        }
        for code, name in settings.LANGUAGES
    ]


def buyer_page(view):
    """Runs a buyer page's view in the buyer's language (and only that view). A `?lang=`
    choice is kept in the language cookie, so it sticks on the next visit."""

    @wraps(view)
    def page(request, *args, **kwargs):
        language, chosen = buyer_language(request)
        request.buyer_language = language
        request.buyer_languages = language_links(request, language)
        with translation.override(language):
            response = view(request, *args, **kwargs)
        if not response.has_header("Content-Language"):
            response["Content-Language"] = language
        patch_vary_headers(response, ("Accept-Language", "Cookie"))
        if chosen and "fragment" not in request.GET:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=LANGUAGE_COOKIE_MAX_AGE,
                samesite="Lax",
                secure=request.is_secure(),
                httponly=True,
            )
        return response

    return page


# --- the checkout page -------------------------------------------------------------------


def receipt_context(checkout: CheckoutInvoice, locale: str) -> dict:
    invoice = checkout.invoice
    quantity = max(checkout.quantity, 1)
    amount_is_fiat = checkout.currency != Product.Currency.SAT
    if amount_is_fiat:
        unit = (checkout.amount / quantity).quantize(Decimal("0.01"), ROUND_HALF_UP)
        unit_price = format_fiat(unit, checkout.currency, locale)
    else:
        unit_price = format_sats(checkout.sats_amount // quantity, locale)
    return {
        "item": checkout.product.name if checkout.product else checkout.description,
        "quantity": quantity,
        "unit_price": unit_price,
        "fiat": format_fiat(checkout.amount, checkout.currency, locale) if amount_is_fiat else "",
        "sats": format_sats(checkout.sats_amount, locale),
        "paid_at": format_paid_at(invoice.paid_at, locale) if invoice.paid_at else "",
        "paid_at_iso": invoice.paid_at.isoformat() if invoice.paid_at else "",
        "invoice_id": checkout.public_id,
        "payment_hash": invoice.payment_hash,
        "preimage": invoice.preimage,
    }


def _receipt_fragment(request, checkout: CheckoutInvoice):
    """The receipt alone, for a page that turned paid while open."""
    if checkout.status != CheckoutInvoice.Status.PAID:
        response = HttpResponse(status=409)
    else:
        context = {
            "merchant": checkout.merchant,
            "receipt": receipt_context(checkout, babel_locale()),
            **branding(checkout.merchant),
        }
        response = HttpResponse(render_to_string("checkout/_receipt.html", context, request))
    response["Cache-Control"] = "no-store"
    return _with_csp(response)


@require_GET
@buyer_page
def checkout_page(request, invoice_id):
    language = translation.get_language()
    locale = babel_locale(language)
    try:
        checkout = checkout_for_page(invoice_id)
    except Http404:
        context = {"title": _("Checkout not found")}
        return _with_csp(render(request, "checkout/not_found.html", context, status=404))
    if request.GET.get("fragment") == "receipt":
        return _receipt_fragment(request, checkout)
    invoice = checkout.invoice
    status = checkout.status
    amount_is_fiat = checkout.currency != Product.Currency.SAT
    brand = branding(checkout.merchant)
    context = {
        "checkout": checkout,
        "merchant": checkout.merchant,
        "product": checkout.product,
        "title": checkout.description or (checkout.product.name if checkout.product else ""),
        "status": status,
        "fiat": format_fiat(checkout.amount, checkout.currency, locale) if amount_is_fiat else "",
        "sats": format_sats(checkout.sats_amount, locale),
        "bolt11": invoice.bolt11,
        "lightning_uri": f"lightning:{invoice.bolt11}",
        "expires_at": invoice.expires_at,
        "qr_svg": lightning_qr_svg(invoice.bolt11, _("QR code of the Lightning invoice"))
        if status == "unpaid"
        else "",
        "is_demo": is_demo(invoice),
        "dev_wallet": dev_wallet_enabled() and is_demo(invoice),
        "redirect_url": _safe_redirect_url(checkout.redirect_url),
        "restart_url": _restart_url(checkout.product),
        "back_url": back_to_shop_url(checkout.merchant, checkout),
        "receipt": receipt_context(checkout, locale) if status == "paid" else None,
        **brand,
        "page_data": {
            "invoiceId": checkout.public_id,
            "status": status,
            "statusUrl": f"/checkout/{checkout.public_id}/status",
            "socketUrl": f"/ws/checkout/{checkout.public_id}",
            "receiptUrl": f"/checkout/{checkout.public_id}?fragment=receipt&lang={language}",
            "expiresAt": invoice.expires_at.isoformat(),
            "serverNow": timezone.now().isoformat(),
            "bolt11": invoice.bolt11,
            "redirectUrl": _safe_redirect_url(checkout.redirect_url),
            "redirectDelay": REDIRECT_DELAY_SECONDS,
            "restartUrl": _restart_url(checkout.product),
            "quantity": checkout.quantity,
            "devPayUrl": "/api/dev/pay",
            "text": page_text(),
        },
    }
    response = render(request, "checkout/page.html", context)
    response["Cache-Control"] = "no-store"
    return _with_csp(response, brand["csp_nonce"])


def invoice_text() -> dict:
    """What the shared invoice script (static/checkout/invoice.js) says, translated."""
    return {
        "copied": _("Invoice copied. Paste it into your wallet."),
        "copyFailed": _("Could not copy: open “Show the invoice as text” and copy it."),
    }


def page_text() -> dict:
    """What the checkout page's script says, in the page's language."""
    return {
        **invoice_text(),
        "unpaid": _("Waiting for payment"),
        "paid": _("Paid"),
        "expired": _("Expired"),
        # {seconds} and {error} are filled in by the script.
        "redirecting": _("Taking you back to the shop in {seconds} s…"),
        "restarting": _("Making a new invoice…"),
        "restartFailed": _("Could not start again: {error}"),
    }


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
@buyer_page
def privacy(request):
    context = {"title": _("Privacy"), "text": _operator_text("PRIVACY_POLICY_FILE")}
    return _with_csp(render(request, "checkout/privacy.html", context))


@require_GET
@buyer_page
def terms(request):
    context = {"title": _("Terms"), "text": _operator_text("TERMS_OF_SERVICE_FILE")}
    return _with_csp(render(request, "checkout/terms.html", context))
