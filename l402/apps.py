from django.apps import AppConfig


class L402Config(AppConfig):
    name = "l402"
    verbose_name = "L402"

    def ready(self):
        from webhooks.services import register_event_type

        from . import receivers  # noqa: F401  (registers the invoice reaction)

        register_event_type("l402.paid", "An L402 challenge's invoice was paid.")
