"""PostgreSQL LISTEN connections of our own, beside Django's."""


def connection_params(django_connection) -> dict:
    """`psycopg.connect()` arguments for a connection of our own to the database of this
    Django connection (to LISTEN on it): Django's parameters without its adapter context
    and cursor class, which belong to Django's own connections."""
    return {
        k: v
        for k, v in django_connection.get_connection_params().items()
        if k not in ("context", "cursor_factory")
    }
