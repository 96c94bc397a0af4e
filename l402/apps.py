from django.apps import AppConfig


class L402Config(AppConfig):
    name = "l402"
