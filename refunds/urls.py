from django.urls import path

from . import pages, views

urlpatterns = [
    path(
        "api/checkout/invoices/<str:invoiceId>/refunds",
        views.CheckoutRefundsView.as_view(),
        name="checkout-invoice-refunds",
    ),
    path("api/refunds", views.RefundListView.as_view(), name="refunds"),
    path("api/refunds/<str:refundId>", views.RefundDetailView.as_view(), name="refund"),
    path(
        "api/refunds/<str:refundId>/reissue",
        views.RefundReissueView.as_view(),
        name="refund-reissue",
    ),
    path(
        "api/refunds/<str:refundId>/cancel", views.RefundCancelView.as_view(), name="refund-cancel"
    ),
    path("refund/<str:token>", pages.refund_page, name="refund-page"),
    path("lnurlw/<str:token>", pages.lnurl_withdraw, name="refund-lnurlw"),
    path(
        "lnurlw/<str:token>/callback",
        pages.lnurl_withdraw_callback,
        name="refund-lnurlw-callback",
    ),
]
