from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/wallet", views.WalletDetailView.as_view(), name="wallet"),
    path("api/v1/payments", views.PaymentsView.as_view(), name="wallet-payments"),
    path("api/v1/payments/paginated", views.PaginatedPaymentsView.as_view(), name="wallet-payments-paginated"),
    path("api/v1/payments/history", views.HistoryView.as_view(), name="wallet-payments-history"),
    path("api/v1/payments/stats/count", views.CountStatsView.as_view(), name="wallet-stats-count"),
    path("api/v1/payments/stats/wallets", views.WalletStatsView.as_view(), name="wallet-stats-wallets"),
    path("api/v1/payments/stats/daily", views.DailyStatsView.as_view(), name="wallet-stats-daily"),
    path("api/v1/payments/settle", views.SettleView.as_view(), name="wallet-payments-settle"),
    path("api/v1/payments/cancel", views.CancelView.as_view(), name="wallet-payments-cancel"),
    path("api/v1/payments/<str:checking_id>", views.PaymentDetailView.as_view(), name="wallet-payment"),
]
