from django.db import models
from django.utils import timezone


class PushMessage(models.Model):
    """The embedded push transport's outbox (no Redis): a message for a group, written in
    the transaction of the change it tells of, so a web process sees it only once that has
    committed. Web processes follow the table (one poll per process on SQLite; one
    LISTEN/NOTIFY connection per process on PostgreSQL); the beat prunes old rows."""

    group = models.CharField(max_length=100)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
