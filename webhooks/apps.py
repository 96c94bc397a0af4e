from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self):
        from . import checkout_events  # noqa: F401  (connects the checkout receivers)
