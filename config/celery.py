"""The Celery app. The paid-invoice watcher runs inside every worker (lightning.worker)."""

import os

from celery import Celery

from lightning.worker import WatcherStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("zapgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(WatcherStep)
