"""Payment links: a public GET URL per active product (`/pay/<productId>`) that opens a fresh
checkout of it and sends the buyer there, to paste into an email, a post or a button.

A GET that makes an invoice is what Stripe's payment links do too; it is rate-limited per
address like the keyless POST, and an unknown, inactive or archived product is a 404 page.
"""

from django.conf import settings
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.problems import Problem
from config.ratelimit import enforce_rate

from . import services
from .models import Product
from .pages import buyer_page

PATH = "/pay/{}"
# The error page is the checkout page's base with nothing of its own to load.
POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def payment_link(product: Product) -> str | None:
    """The product's payment link; None when it cannot be bought."""
    if not product.active or product.archived:
        return None
    return settings.PUBLIC_BASE_URL.rstrip("/") + PATH.format(product.public_id)


def button_html(product: Product) -> str:
    """An HTML snippet (a styled link) a merchant pastes into a web page."""
    link = payment_link(product)
    if link is None:
        return ""
    return (
        f'<a href="{link}" style="display:inline-block;padding:12px 20px;border-radius:8px;'
        "background:#f7931a;color:#111;font:600 16px/1.2 system-ui,sans-serif;"
        f'text-decoration:none">Pay with Lightning</a>'
    )


def _refusal(status: int) -> str:
    if status == 404:
        return gettext("This product is not for sale at the moment.")
    if status == 429:
        return gettext(
            "Too many payments were started from this address. Please wait a minute and try again."
        )
    return gettext("Payments cannot be started right now. Please try again in a few minutes.")


@never_cache
@require_GET
@buyer_page
def open_payment_link(request, product_id):
    try:
        enforce_rate(
            request, "checkout-public", settings.CHECKOUT_PUBLIC_RATE_PER_MINUTE, period=60
        )
        checkout = services.start_product_checkout(product_id, {})
    except Problem as exc:
        context = {"message": _refusal(exc.status_code)}
        response = render(request, "checkout/link_error.html", context, status=exc.status_code)
        if exc.headers:
            for name, value in exc.headers.items():
                response[name] = value
        response["Content-Security-Policy"] = POLICY
        return response
    return redirect(f"/checkout/{checkout.public_id}", permanent=False)
