"""URLs of the buyer-facing pages (the hosted checkout page, its status, /privacy, /terms)."""

from django.urls import path

from . import links, pages

urlpatterns = [
    path("checkout/<str:invoice_id>", pages.checkout_page, name="checkout-page"),
    path(
        "checkout/<str:invoiceId>/status",
        pages.CheckoutStatusView.as_view(),
        name="checkout-status",
    ),
    path("pay/<str:product_id>", links.open_payment_link, name="payment-link"),
    path("privacy", pages.privacy, name="privacy"),
    path("terms", pages.terms, name="terms"),
]
