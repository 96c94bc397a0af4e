"""WebSocket routes (config.asgi): each app's consumers."""

from django.urls import re_path

from checkout.consumers import CheckoutConsumer
from realtime.consumers import RefusedConsumer
from wallets.consumers import WalletConsumer

websocket_urlpatterns = [
    re_path(r"^ws/checkout/(?P<invoiceId>[A-Za-z0-9_]{1,64})$", CheckoutConsumer.as_asgi()),
    re_path(r"^api/v1/ws/(?P<id>[A-Za-z0-9_\-]{1,200})$", WalletConsumer.as_asgi()),
    re_path(r"", RefusedConsumer.as_asgi()),  # any other path: a 403 handshake, not an error
]
