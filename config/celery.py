"""The Celery app. The paid-invoice watcher runs inside every worker (lightning.worker)."""

import os

from celery import Celery

from lightning.worker import BeatThreadStep, WatcherStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("zapgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(WatcherStep)
app.steps["worker"].add(BeatThreadStep)


def declare_queues(url: str | None = None) -> None:
    """Declare the broker's queues (for the embedded broker: create its tables and queue
    rows) before the processes that use them start.

    The embedded SQLAlchemy transport creates them on first use, guarded only by a lock
    inside one process: a worker, beat and the web server starting at the same moment on a
    fresh data folder race to insert the `celery` queue row, and the loser dies with an
    IntegrityError (seen as a worker that stood by, then exited). Declaring is idempotent,
    and harmless on Redis."""
    with app.connection_for_write(url) as conn:
        channel = conn.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
