"""Runs the watcher inside every Celery worker process (only one of them subscribes)."""

import logging
import threading

from celery import bootsteps

log = logging.getLogger("lightning.watcher")


class WatcherStep(bootsteps.StartStopStep):
    """A worker bootstep: starts the watcher thread when the worker starts, stops it (and
    hands back the lease) when the worker shuts down."""

    # After the pool, so prefork children are not forked with the watcher's state.
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker, **kwargs):
        self.watcher = None
        self.thread = None
        super().__init__(worker, **kwargs)

    def start(self, worker):
        from django.conf import settings

        if not settings.WATCHER_ENABLED:
            log.info("watcher disabled (WATCHER_ENABLED=false)")
            return
        from lightning.watcher import Watcher

        self.watcher = Watcher()
        self.thread = threading.Thread(target=self.watcher.run, name="invoice-watcher", daemon=True)
        self.thread.start()

    def stop(self, worker):
        if self.watcher is not None:
            self.watcher.stop()
            self.thread.join(timeout=10)


class BeatThreadStep(bootsteps.StartStopStep):
    """`WORKER_BEAT=true`: Celery beat as a thread of this worker, for a deployment with
    one worker (the demo of `make run`): one process less than a beat of its own (which
    loads all of Django again), and no forked copy as `celery worker -B` makes. Run beat
    in exactly one place: here in one worker, or as its own process."""

    def __init__(self, worker, **kwargs):
        self.service = None
        super().__init__(worker, **kwargs)

    def start(self, worker):
        from celery.beat import EmbeddedService
        from django.conf import settings

        if not settings.WORKER_BEAT:
            return
        self.service = EmbeddedService(
            worker.app, thread=True, schedule_filename=settings.CELERY_BEAT_SCHEDULE_FILENAME
        )
        self.service.start()
        log.info("beat runs inside this worker (WORKER_BEAT=true)")

    def stop(self, worker):
        if self.service is not None:
            self.service.stop()
