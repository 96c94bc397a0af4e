from django.urls import path

from . import views

urlpatterns = [
    path("v1/test", views.TestView.as_view(), name="v1-test"),
    path("v1/inventory/<slug:slug>", views.InventoryView.as_view(), name="v1-inventory"),
    path("v1/order", views.OrderCreateView.as_view(), name="v1-order"),
    path("v1/order/<str:order_id>", views.OrderDetailView.as_view(), name="v1-order-detail"),
    path("v1/purchase", views.PurchaseView.as_view(), name="v1-purchase"),
    path("v1/account_balance", views.BalanceView.as_view(), name="v1-balance"),
    path("v1/account_balance/topup", views.TopUpView.as_view(), name="v1-topup"),
    path("api/orders", views.MerchantOrderListView.as_view(), name="orders"),
    path("api/orders/customers", views.CustomerListView.as_view(), name="orders-customers"),
    path("api/orders/operators", views.OperatorListView.as_view(), name="orders-operators"),
    path(
        "api/orders/operators/<slug:slug>/codes",
        views.CodesView.as_view(),
        name="orders-operator-codes",
    ),
]
