from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/wallet", views.WalletDetailView.as_view(), name="wallet"),
    path("api/v1/payments", views.PaymentsView.as_view(), name="wallet-payments"),
    path("api/v1/payments/paginated", views.PaginatedPaymentsView.as_view()),
    path("api/v1/payments/history", views.HistoryView.as_view()),
    path("api/v1/payments/stats/count", views.CountStatsView.as_view()),
    path("api/v1/payments/stats/wallets", views.WalletStatsView.as_view()),
    path("api/v1/payments/stats/daily", views.DailyStatsView.as_view()),
    path("api/v1/payments/settle", views.SettleView.as_view()),
    path("api/v1/payments/cancel", views.CancelView.as_view()),
    path("api/v1/payments/<str:checking_id>", views.PaymentDetailView.as_view()),
]
