"""The embedded push transport (realtime.push.DatabaseChannelLayer) on the test database:
a poll on SQLite, LISTEN/NOTIFY on PostgreSQL. A message exists only if the transaction
that published it committed; each process reads the table once for all its sockets."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection, transaction

from realtime import push
from realtime.models import PushMessage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PUSH_REDIS_URL = ""
    settings.PUSH_POLL_SECONDS = 0.01


async def joined(layer, *groups):
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return channel


async def next_message(layer, channel, timeout=10.0):
    return await asyncio.wait_for(layer.receive(channel), timeout)


def publish_from_another_thread(group, data, rollback=False):
    """As the watcher does: in its own thread, with its own connection and transaction."""
    import threading

    def run():
        try:
            with transaction.atomic():
                push.publish(group, data)
                if rollback:
                    raise RuntimeError("the change fails")
        except RuntimeError:
            pass
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def test_a_committed_publish_reaches_the_group_and_a_rolled_back_one_never_does():
    async def scenario():
        layer = push.DatabaseChannelLayer()
        channel = await joined(layer, "checkout.a")
        other = await joined(layer, "checkout.b")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, publish_from_another_thread, "checkout.a", {"n": 1}, True)
        await loop.run_in_executor(None, publish_from_another_thread, "checkout.a", {"n": 2})
        got = await next_message(layer, channel)
        with pytest.raises(TimeoutError):
            await next_message(layer, other, timeout=0.5)
        await layer.stop()
        return got

    assert asyncio.run(scenario()) == {"type": push.MESSAGE_TYPE, "data": {"n": 2}}
    assert list(PushMessage.objects.values_list("payload", flat=True)) == [
        {"type": push.MESSAGE_TYPE, "data": {"n": 2}}
    ]


def test_messages_published_before_a_socket_joins_are_not_replayed_to_it():
    """A socket reads the current state after joining; older messages are not its news."""
    publish_from_another_thread("checkout.c", {"n": "old"})

    async def scenario():
        layer = push.DatabaseChannelLayer()
        channel = await joined(layer, "checkout.c")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, publish_from_another_thread, "checkout.c", {"n": "new"})
        got = await next_message(layer, channel)
        await layer.stop()
        return got

    assert asyncio.run(scenario())["data"] == {"n": "new"}


def test_many_sockets_cost_one_reader_not_a_query_each(settings):
    """200 sockets in 200 groups: the table is read by the one follower, whatever their
    number (on SQLite a poll every PUSH_POLL_SECONDS; on PostgreSQL only when notified)."""
    settings.PUSH_POLL_SECONDS = 0.05

    async def scenario():
        layer = push.DatabaseChannelLayer()
        for i in range(200):
            await joined(layer, f"checkout.s{i}")
        await asyncio.sleep(0.5)
        reads = layer.reads
        await layer.stop()
        return reads

    reads = asyncio.run(scenario())
    assert reads <= 15  # 0.5 s / 0.05 s, plus the start; never 200 per round


def test_publish_outside_a_transaction_and_prune():
    push.publish("checkout.d", {"n": 1})
    assert PushMessage.objects.count() == 1
    assert push.prune(older_than_seconds=3600) == 0
    assert push.prune(older_than_seconds=0) == 1
