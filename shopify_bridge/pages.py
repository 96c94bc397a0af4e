"""The buyer's pages: the hosted payment page of an order (for wallets that do not hand
back the preimage: it shows the claim link once paid) and the claim form.

The payment page has the checkout page's invoice component (templates/checkout/_invoice.html
and static/checkout/invoice.js: QR code, open in wallet, copy, countdown); its script asks
the page's own URL for the order's state (`?fragment=state`) every few seconds and reloads
once paid. Without JavaScript it refreshes itself every few seconds while unpaid. Both pages
speak the buyer's language (checkout.pages.buyer_page).
"""

import hmac
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from checkout.pages import (
    _with_csp,
    babel_locale,
    back_to_shop_url,
    branding,
    buyer_page,
    format_fiat,
    format_sats,
    invoice_text,
    lightning_qr_svg,
)
from config.problems import Problem
from config.ratelimit import check_rate, client_address

from . import services
from .models import ShopifyOrder
from .serializers import ShopifyClaimSerializer

Status = ShopifyOrder.Status
REFRESH_SECONDS = 3
PAID_STATES = (
    Status.AWAITING_DETAILS,
    Status.PROCESSING,
    Status.PLACED,
    Status.SHIPPED,
    Status.NEEDS_REFUND,
)


def _page(request, template, context, status=200):
    brand = branding(context["store"].merchant)
    response = render(request, template, {**context, **brand}, status=status)
    response["Cache-Control"] = "no-store"
    return _with_csp(response, brand["csp_nonce"])  # Referrer-Policy: the URLs carry secrets


def _store(slug):
    try:
        return services.store_for_public(slug)
    except Problem:
        raise Http404 from None


@require_GET
@buyer_page
def pay_page(request, slug, order_id):
    store = _store(slug)
    order = (
        ShopifyOrder.objects.filter(store=store, public_id=order_id)
        .select_related("invoice")
        .first()
    )
    key = request.GET.get("k", "")
    if order is None or not hmac.compare_digest(services.pay_page_key(order_id), key):
        raise Http404
    if order.status in PAID_STATES:
        state = "paid"
    elif order.status == Status.AWAITING_PAYMENT and order.invoice.expires_at > timezone.now():
        state = "unpaid"
    else:
        state = "expired"  # never shows an invoice that can no longer be paid
    if request.GET.get("fragment") == "state":
        response = JsonResponse({"state": state})
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response
    token = services.claim_token(order.public_id) if state == "paid" else ""
    locale = babel_locale()
    invoice = order.invoice
    bolt11 = invoice.bolt11 if state == "unpaid" else ""
    context = {
        "store": store,
        "order": order,
        "state": state,
        "lines": [
            {
                "quantity": line.quantity,
                "title": line.title,
                "unit_price": format_fiat(line.unit_price_usd, "USD", locale),
            }
            for line in order.lines.all()
        ],
        "shipping": format_fiat(order.shipping_usd, "USD", locale) if order.shipping_usd else "",
        "total": format_fiat(order.total_usd, "USD", locale),
        "sats": format_sats(order.amount_sats, locale),
        "bolt11": bolt11,
        "lightning_uri": f"lightning:{bolt11}" if bolt11 else "",
        "expires_at": invoice.expires_at,
        "qr_svg": lightning_qr_svg(bolt11, _("QR code of the Lightning invoice")) if bolt11 else "",
        "claim_token": token,
        "claim_link": f"/shopify/{store.slug}/claim?token={token}" if token else "",
        "refresh_seconds": REFRESH_SECONDS if state == "unpaid" else 0,
        "back_url": back_to_shop_url(store.merchant) or f"https://{store.shop_domain}",
        "page_data": {
            "state": state,
            "stateUrl": f"{request.path}?{urlencode({'k': key, 'fragment': 'state'})}",
            "bolt11": bolt11,
            "expiresAt": invoice.expires_at.isoformat(),
            "serverNow": timezone.now().isoformat(),
            "text": invoice_text(),
        }
        if state == "unpaid"
        else {},
    }
    return _page(request, "shopify_bridge/pay.html", context)


FORM_FIELDS = [
    # name, label, required, autocomplete, max length
    ("claimToken", gettext_lazy("Claim token"), True, "off", 20),
    ("email", gettext_lazy("Email"), True, "email", 200),
    ("firstName", gettext_lazy("First name"), True, "given-name", 100),
    ("lastName", gettext_lazy("Last name"), True, "family-name", 100),
    ("address1", gettext_lazy("Address"), True, "address-line1", 255),
    ("address2", gettext_lazy("Address line 2"), False, "address-line2", 255),
    ("city", gettext_lazy("City"), True, "address-level2", 100),
    ("province", gettext_lazy("State / province code"), False, "address-level1", 100),
    ("zip", gettext_lazy("ZIP / postal code"), True, "postal-code", 20),
    ("country", gettext_lazy("Country code (e.g. US)"), True, "country", 2),
]
TOP_LEVEL = {"claimToken", "email"}


@require_http_methods(["GET", "POST"])
@buyer_page
def claim_page(request, slug):
    store = _store(slug)
    values = {name: "" for name, *_ in FORM_FIELDS}
    if request.method == "GET":
        values["claimToken"] = request.GET.get("token", "")[:20]
        return _claim_form(request, store, values)
    values.update({name: request.POST.get(name, "").strip() for name in values})
    retry_after = check_rate(
        client_address(request), "shopify-claim", settings.SHOPIFY_CLAIM_RATE_PER_MINUTE, 60
    )
    if retry_after:
        error = _("Too many attempts. Try again in %(seconds)s seconds.") % {"seconds": retry_after}
        return _claim_form(request, store, values, error=error, status=429)
    data = {name: values[name] for name in TOP_LEVEL}
    data["shippingAddress"] = {k: v for k, v in values.items() if k not in TOP_LEVEL}
    serializer = ShopifyClaimSerializer(data=data)
    if not serializer.is_valid():
        errors = _flat_errors(serializer.errors)
        return _claim_form(
            request,
            store,
            values,
            error=_("Please correct the fields below."),
            errors=errors,
            status=400,
        )
    valid = serializer.validated_data
    try:
        order = services.claim_order(
            store, valid["claimToken"], valid["email"], valid["shippingAddress"]
        )
    except Problem as problem:
        errors = {k.split(".")[-1]: v for k, v in (problem.errors or {}).items()}
        return _claim_form(
            request,
            store,
            values,
            error=str(problem.detail),
            errors=errors,
            status=problem.status_code,
        )
    context = {
        "store": store,
        "order": order,
        "message": services.claim_message(order),
        "status_url": f"/api/shopify/{store.slug}/orders/{order.public_id}?claimToken=…",
    }
    return _page(request, "shopify_bridge/claimed.html", context)


def _flat_errors(errors) -> dict:
    flat = {}
    for name, messages in errors.items():
        if isinstance(messages, dict):
            flat.update(_flat_errors(messages))
        else:
            flat[name] = [str(m) for m in messages]
    return flat


def _claim_form(request, store, values, error="", errors=None, status=200):
    errors = errors or {}
    fields = [
        {
            "name": name,
            "label": label,
            "required": required,
            "autocomplete": autocomplete,
            "max_length": max_length,
            "value": values.get(name, ""),
            "errors": errors.get(name, []),
        }
        for name, label, required, autocomplete, max_length in FORM_FIELDS
    ]
    context = {"store": store, "fields": fields, "error": error}
    return _page(request, "shopify_bridge/claim.html", context, status=status)
