"""Push: tell the open sockets of every web process about a change, as soon as it commits.

Producers (the watcher in the Celery worker, a web request that pays internally) call
`publish(group, data)` inside the transaction of the change. Sockets (realtime.consumers)
join groups with Django Channels; the channel layer carries a message to the web processes:

- with Redis (PUSH_REDIS_URL, by default the Redis of CELERY_BROKER_URL): channels-redis'
  pub/sub layer; the message is sent once the transaction has committed;
- embedded (no Redis): `DatabaseChannelLayer`. The message is a row of `PushMessage`,
  written in the transaction itself (it exists if and only if the change committed). Each
  web process follows the table with one reader, whatever the number of its sockets: one
  poll every PUSH_POLL_SECONDS on SQLite (only while it has sockets), and on PostgreSQL a
  LISTEN connection woken by a NOTIFY sent in the same transaction.

A message is a hint with the new state in it. What a socket shows never depends on it
alone: a socket reads the current state when it opens (after joining its group, so nothing
falls between), and again when its process's follower had to reconnect (`push.resync`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from config.pglisten import connection_params

from .models import PushMessage

log = logging.getLogger("realtime")

NOTIFY_CHANNEL = "zapgate_push"
MESSAGE_TYPE = "push.message"
RESYNC_TYPE = "push.resync"


def embedded() -> bool:
    return not settings.PUSH_REDIS_URL


def publish(group: str, data: dict) -> None:
    """Send `data` to the sockets in `group` once the current transaction commits (at once
    outside one). Never raises: a push is a courtesy to open pages, and a failure here must
    not undo the payment it tells of (the sockets' own reads and the pages' poll cover it)."""
    message = {"type": MESSAGE_TYPE, "data": data}
    if embedded():
        try:
            with transaction.atomic():  # a savepoint: a failure undoes the push alone
                row = PushMessage.objects.create(group=group, payload=message)
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(row.pk)])
        except Exception:
            log.exception("push to %s could not be written; its sockets read it later", group)
        return
    transaction.on_commit(lambda: _sender().submit(group, message), robust=True)


class _Sender:
    """Sends to the channel layer (Redis) from one event loop thread per process, in the
    order the messages were published; `submit` does not wait. `async_to_sync` made an
    event loop and a Redis connection per message: 2.4 ms of CPU each, three per payment,
    on the watcher's thread while the payment's webhook was being sent."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.thread = threading.Thread(target=self._run, name="push-sender", daemon=True)
        self.thread.start()

    def submit(self, group: str, message: dict) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (group, message))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._send_all())

    async def _send_all(self) -> None:
        layer = get_channel_layer()
        while True:
            group, message = await self.queue.get()
            try:
                await layer.group_send(group, message)
            except Exception:
                log.exception("push to %s could not be sent; its sockets read it later", group)


_senders: dict[int, _Sender] = {}
_senders_lock = threading.Lock()


def _sender() -> _Sender:
    """This process's sender (a forked child makes its own: threads do not survive fork)."""
    pid = os.getpid()
    found = _senders.get(pid)
    if found is None:
        with _senders_lock:
            found = _senders.get(pid) or _senders.setdefault(pid, _Sender())
    return found


def prune(older_than_seconds: float | None = None) -> int:
    """Delete the embedded transport's messages once every follower has long read them."""
    age = older_than_seconds if older_than_seconds is not None else settings.PUSH_KEEP_SECONDS
    cutoff = timezone.now() - timedelta(seconds=age)
    return PushMessage.objects.filter(created_at__lt=cutoff).delete()[0]


class DatabaseChannelLayer(InMemoryChannelLayer):
    """Channels' in-memory layer for the sockets of this process, fed with the messages
    that any process publishes through the PushMessage table (see the module docstring).

    One follower per process (per event loop): its reads run on a thread of their own with
    its own database connection, so they never wait behind requests."""

    def __init__(self, poll_seconds=None, **kwargs):
        # Sockets leave their groups when they close; a socket open for days (an LNbits
        # client) must not be dropped from its group by the in-memory layer's expiry.
        kwargs.setdefault("group_expiry", 10 * 365 * 86400)
        super().__init__(**kwargs)
        self.poll_seconds = poll_seconds
        self._follower: asyncio.Task | None = None
        self._cursor: int | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="push-follower")
        self._db = None  # the follower's own connection, used on its thread only
        self._ready = asyncio.Event()
        self._resync_due = False
        self.reads = 0  # reads of the table (or wake-ups on PostgreSQL), for the tests

    async def stop(self):
        """End the follower and close its connection (tests; a process just exits)."""
        if self._follower is not None:
            self._follower.cancel()
            try:
                await self._follower
            except (asyncio.CancelledError, Exception):
                pass
            self._follower = None
        await self._run(self._close_db)

    # --- what consumers call ----------------------------------------------------------
    async def group_add(self, group, channel):
        await super().group_add(group, channel)
        await self._ensure_follower()

    async def group_send(self, group, message):
        """From async code in any process: written like `publish` (the follower of every
        process, this one included, delivers it)."""
        data = message.get("data") if message.get("type") == MESSAGE_TYPE else None
        if data is None:
            raise ValueError("DatabaseChannelLayer only carries push messages")
        await database_sync_to_async(publish)(group, data)

    # --- the follower -----------------------------------------------------------------
    async def _run(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self._reader, func, *args)

    # On the follower's thread: a connection of its own, apart from requests' and from
    # Django's per-thread handling, and plain SQL (no ORM query to build every poll).
    def _connection(self):
        if self._db is None:
            self._db = connections.create_connection("default")
        return self._db

    def _close_db(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def _query(self, sql: str, params=()):
        db = self._connection()
        table = db.ops.quote_name(PushMessage._meta.db_table)
        group = db.ops.quote_name("group")
        with db.cursor() as cursor:
            cursor.execute(sql.format(table=table, group=group), params)
            return cursor.fetchall()

    async def _ensure_follower(self):
        if self._follower is None or self._follower.done():
            self._ready = asyncio.Event()
            self._follower = asyncio.get_running_loop().create_task(self._follow())
        # A socket reads its state after joining: the follower must have its starting
        # point by then, or a change committed in between would fall through.
        await self._ready.wait()

    async def _follow(self):
        vendor = await self._run(lambda: self._connection().vendor)
        while True:
            try:
                if vendor == "postgresql":
                    await self._listen()
                else:
                    await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("push follower failed (%r); reconnecting", exc)
                self._resync_due = True
                self._ready.set()  # sockets still open and read; they read again once back
                await self._run(self._close_db)
                await asyncio.sleep(1.0)

    async def _start_cursor(self):
        rows = await self._run(self._query, "SELECT MAX(id) FROM {table}")
        self._cursor = rows[0][0] or 0

    async def _poll(self):
        interval = self.poll_seconds or settings.PUSH_POLL_SECONDS
        await self._start_cursor()
        self._ready.set()
        await self._resync_if_due()
        while True:
            if not self.groups:
                # No sockets here: nothing to read; start from the end when one joins.
                self._ready.clear()
                while not self.groups:
                    await asyncio.sleep(0.05)
                await self._start_cursor()
                self._ready.set()
            rows = await self._run(self._fetch_after, self._cursor)
            self.reads += 1
            if rows:
                self._cursor = rows[-1][0]
                await self._deliver(rows)
            await asyncio.sleep(interval)

    def _fetch_after(self, cursor: int):
        return self._query(
            "SELECT id, {group}, payload FROM {table} WHERE id > %s ORDER BY id LIMIT 1000",
            [cursor],
        )

    async def _listen(self):
        import psycopg

        params = await self._run(lambda: connection_params(self._connection()))
        conn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        try:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._ready.set()
            await self._resync_if_due()
            while True:
                ids = []
                async for notice in conn.notifies(timeout=30.0, stop_after=1):
                    ids.append(int(notice.payload))
                if not ids:
                    await conn.execute("SELECT 1")  # a dead connection shows here
                    continue
                self.reads += 1
                cursor = await conn.execute(
                    'SELECT id, "group", payload FROM realtime_pushmessage '
                    "WHERE id = ANY(%s) ORDER BY id",
                    [ids],
                )
                rows = [(pk, group, payload) for pk, group, payload in await cursor.fetchall()]
                await self._deliver(rows)
        finally:
            await conn.close()

    async def _deliver(self, rows):
        for _pk, group, payload in rows:
            if group in self.groups:
                if isinstance(payload, str):
                    payload = json.loads(payload)
                await InMemoryChannelLayer.group_send(self, group, payload)

    async def _resync_if_due(self):
        """After a failure, messages may have gone by unread: every socket here reads its
        state again (now that the follower is back, so nothing falls between)."""
        if self._resync_due:
            self._resync_due = False
            for group in list(self.groups):
                await InMemoryChannelLayer.group_send(self, group, {"type": RESYNC_TYPE})
