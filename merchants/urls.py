from django.urls import path

from . import views

urlpatterns = [
    path("api/merchant/me", views.MeView.as_view(), name="merchant-me"),
    path("api/merchant/quickstart", views.QuickstartView.as_view(), name="merchant-quickstart"),
    path(
        "api/merchant/nwc-connection",
        views.NwcConnectionView.as_view(),
        name="merchant-nwc-connection",
    ),
    path(
        "api/merchant/payment-provider",
        views.PaymentProviderView.as_view(),
        name="merchant-payment-provider",
    ),
]
