from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self):
        from . import schema  # noqa: F401  (register the NIP-98 scheme with drf-spectacular)
