from django.core.management.base import BaseCommand

from config.celery import declare_queues


class Command(BaseCommand):
    help = (
        "Declare the Celery broker's queues (with the embedded broker: create its tables). "
        "Run before starting the worker, beat and the web server together on a fresh data "
        "folder; `make run` does."
    )

    def handle(self, *args, **options):
        declare_queues()
