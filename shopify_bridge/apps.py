from django.apps import AppConfig


class ShopifyBridgeConfig(AppConfig):
    name = "shopify_bridge"
