from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "checkout"

    def ready(self):
        from . import receivers, schema  # noqa: F401  (register reactions and schema)
