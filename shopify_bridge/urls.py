from django.urls import path

from . import pages, views

urlpatterns = [
    path("api/shopify/stores", views.StoreListView.as_view(), name="shopify-stores"),
    path("api/shopify/stores/<slug:slug>", views.StoreDetailView.as_view(), name="shopify-store"),
    path(
        "api/shopify/stores/<slug:slug>/sync",
        views.StoreSyncView.as_view(),
        name="shopify-store-sync",
    ),
    path("api/shopify/<slug:slug>/catalog", views.CatalogView.as_view(), name="shopify-catalog"),
    path("api/shopify/<slug:slug>/checkout", views.CheckoutView.as_view(), name="shopify-checkout"),
    path("api/shopify/<slug:slug>/claim", views.ClaimView.as_view(), name="shopify-claim"),
    path(
        "api/shopify/<slug:slug>/orders/<str:orderId>",
        views.OrderStatusView.as_view(),
        name="shopify-order",
    ),
    path(
        "api/shopify/<slug:slug>/webhooks",
        views.ShopifyWebhookView.as_view(),
        name="shopify-webhooks",
    ),
    path("api/stats/shopify", views.ShopifyStatsView.as_view(), name="stats-shopify"),
    path("shopify/<slug:slug>/pay/<str:order_id>", pages.pay_page, name="shopify-pay-page"),
    path("shopify/<slug:slug>/claim", pages.claim_page, name="shopify-claim-page"),
]
