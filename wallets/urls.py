from django.urls import path

from . import views

P = "api/v1/payments"

urlpatterns = [
    path("api/v1/wallet", views.WalletDetailView.as_view(), name="wallet"),
    path(P, views.PaymentsView.as_view(), name="wallet-payments"),
    path(f"{P}/paginated", views.PaginatedPaymentsView.as_view(), name="wallet-paginated"),
    path(f"{P}/history", views.HistoryView.as_view(), name="wallet-history"),
    path(f"{P}/stats/count", views.CountStatsView.as_view(), name="wallet-stats-count"),
    path(f"{P}/stats/wallets", views.WalletStatsView.as_view(), name="wallet-stats-wallets"),
    path(f"{P}/stats/daily", views.DailyStatsView.as_view(), name="wallet-stats-daily"),
    path(f"{P}/settle", views.SettleView.as_view(), name="wallet-settle"),
    path(f"{P}/cancel", views.CancelView.as_view(), name="wallet-cancel"),
    path(f"{P}/<str:checking_id>", views.PaymentDetailView.as_view(), name="wallet-payment"),
]
