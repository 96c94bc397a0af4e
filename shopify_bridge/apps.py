from django.apps import AppConfig


class ShopifyBridgeConfig(AppConfig):
    name = "shopify_bridge"
    verbose_name = "Shopify"

    def ready(self):
        from . import events, receivers  # noqa: F401  (registers the invoice reaction)

        events.register()
