from django.urls import path

from . import views, webhooks_views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("login", views.LoginView.as_view(), name="login"),
    path("logout", views.LogoutView.as_view(), name="logout"),
    path("invoices", views.invoices, name="invoices"),
    path("invoices.csv", views.invoices_csv, name="invoices-csv"),
    path("invoices/<str:invoice_id>", views.invoice_detail, name="invoice"),
    path("products", views.products, name="products"),
    path("products/new", views.product_edit, name="product-new"),
    path("products/<str:product_id>", views.product_edit, name="product"),
    path("settings", views.settings_page, name="settings"),
    path("keys", views.api_keys, name="keys"),
    path("keys/<int:key_id>/revoke", views.revoke_key, name="key-revoke"),
    *webhooks_views.urlpatterns,
]
