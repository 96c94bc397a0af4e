from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView

from config.security import DocsView

urlpatterns = [
    path("", include("lightning.urls")),
    path("", include("checkout.urls")),
    path("", include("webhooks.urls")),
    path("", include("agents.urls")),
    path("", include("l402.urls")),
    path("", include("shopify_bridge.urls")),
    path("", include("wallets.urls")),
    path("", include("refunds.urls")),
    path("", include("orders.urls")),
    path("", include("merchants.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("admin/", admin.site.urls),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", DocsView.as_view(url_name="openapi"), name="docs"),
]

handler400 = "config.problems.bad_request"
handler404 = "config.problems.not_found"
handler500 = "config.problems.server_error"
