from django.urls import include, path

from . import views

urlpatterns = [
    path("", include("checkout.page_urls")),
    path("api/checkout/products", views.ProductListView.as_view(), name="checkout-products"),
    path(
        "api/checkout/products/<str:productId>",
        views.ProductDetailView.as_view(),
        name="checkout-product",
    ),
    path(
        "api/checkout/products/<str:productId>/checkout",
        views.ProductCheckoutView.as_view(),
        name="checkout-product-checkout",
    ),
    path(
        "api/checkout/invoices", views.CheckoutInvoiceListView.as_view(), name="checkout-invoices"
    ),
    path(
        "api/checkout/invoices/<str:invoiceId>",
        views.CheckoutInvoiceDetailView.as_view(),
        name="checkout-invoice",
    ),
]
