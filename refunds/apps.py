from django.apps import AppConfig


class RefundsConfig(AppConfig):
    name = "refunds"

    def ready(self):
        from . import receivers  # noqa: F401  (event types; following outgoing payments)
