from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "wallets"

    def ready(self):
        from . import receivers  # noqa: F401  (register reactions and event types)
