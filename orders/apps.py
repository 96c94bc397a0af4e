from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        from . import receivers, schema  # noqa: F401  (reactions, event types; HTTP Basic)
