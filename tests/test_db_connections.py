"""PostgreSQL connections kept between requests: a connection the server dropped while it
sat idle is replaced before the next request's first query (Django's health check), and
one in use is not tested again on every request (config.db.postgresql)."""

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connection

from config.db.postgresql.base import FRESH_SECONDS
from config.pglisten import connection_params

pytestmark = [
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "config.db.postgresql",
        reason="PostgreSQL only (CI runs the suite on PostgreSQL too)",
    ),
    pytest.mark.django_db(transaction=True),
]


def _query() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _drop(pid: int) -> None:
    """The server ends this backend, as a restart or an idle timeout would."""
    with psycopg.connect(**connection_params(connection), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_connection_dropped_while_idle_is_replaced_before_the_next_query():
    pid = _query()
    _drop(pid)
    connection._used_at -= FRESH_SECONDS + 1  # idle since its last use
    connection.close_if_unusable_or_obsolete()  # what each request starts with
    assert _query() != pid  # tested, found dead, replaced: no error


def test_a_connection_in_use_is_not_tested_again_and_a_failure_replaces_it():
    pid = _query()
    connection.close_if_unusable_or_obsolete()
    assert _query() == pid  # the same connection, kept
    _drop(pid)
    connection.close_if_unusable_or_obsolete()
    # Used a moment ago, so not tested: the query finds the connection gone (the cost of
    # skipping the round trip is this one failure, in the moment after a restart)...
    with pytest.raises(OperationalError):
        _query()
    # ...and, as at the end of that request, Django closes it; the next query reconnects.
    connection.close_if_unusable_or_obsolete()
    assert _query() != pid
