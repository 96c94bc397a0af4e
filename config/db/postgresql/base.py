"""Django's PostgreSQL backend, with its health check skipped for a connection in use.

CONN_HEALTH_CHECKS makes Django test a kept connection (a `SELECT 1` round trip) in every
request before its first query, so that a connection the server dropped (a restart, an idle
timeout) is replaced instead of failing the request. Under load that was a round trip and
a twentieth of the web process's CPU on each status read. A connection used successfully
less than FRESH_SECONDS ago is not tested again: had that use failed, Django would have
tested it (and closed it) at the end of that request. One idle for longer is tested as
before.
"""

import time

from django.db.backends.postgresql import base

FRESH_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    _used_at = float("-inf")

    def close_if_health_check_failed(self):
        now = time.monotonic()
        if (
            self.connection is not None
            and not self.health_check_done
            and not self.errors_occurred
            and now - self._used_at < FRESH_SECONDS
        ):
            self.health_check_done = True
        super().close_if_health_check_failed()
        self._used_at = now

    def connect(self):
        super().connect()
        self._used_at = time.monotonic()
