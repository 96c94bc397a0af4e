"""The base of every push socket: who may open one, how many, and what it does when a
message comes (realtime.push). The apps subclass it for their own sockets
(checkout.consumers, wallets.consumers) and say what a socket joins and shows."""

from __future__ import annotations

import json
from collections import Counter

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

# Sockets open in this process, per client address (see PUSH_MAX_SOCKETS_PER_ADDRESS).
_open_per_address: Counter[str] = Counter()

# Close codes (the 4000-4999 range is the application's).
CLOSE_TOO_MANY = 4429


def client_address(scope) -> str:
    """The socket's client address: the TCP peer, or the header a trusted reverse proxy sets
    (CLIENT_IP_HEADER, as for HTTP rate limits)."""
    header = settings.CLIENT_IP_HEADER
    if header:
        wanted = header.lower().encode()
        for name, value in scope.get("headers", []):
            if name == wanted:
                first = value.decode("latin-1").split(",")[0].strip()
                if first:
                    return first
    client = scope.get("client")
    return client[0] if client else ""


def open_sockets(address: str | None = None) -> int:
    return _open_per_address[address] if address is not None else sum(_open_per_address.values())


class PushConsumer(AsyncWebsocketConsumer):
    """Subclasses define `authorize()` (the group to join, or None to refuse the handshake)
    and may define `current()` (the messages to send on opening and after a resync) and
    `is_final(data)` (close once this was sent)."""

    group: str | None = None
    _counted = False

    async def connect(self):
        self.address = client_address(self.scope)
        if _open_per_address[self.address] >= settings.PUSH_MAX_SOCKETS_PER_ADDRESS:
            await self.close(code=CLOSE_TOO_MANY)  # before accept: the handshake gets 403
            return
        _open_per_address[self.address] += 1
        self._counted = True
        group = await self.authorize()
        if group is None:
            await self.close()
            return
        await self.accept()
        # Join first, then read: a change is either in what is read or in a message after.
        await self.channel_layer.group_add(group, self.channel_name)
        self.group = group
        await self.send_current()

    async def disconnect(self, code):
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None
        if self._counted:
            self._counted = False
            _open_per_address[self.address] -= 1
            if _open_per_address[self.address] <= 0:
                del _open_per_address[self.address]

    async def receive(self, text_data=None, bytes_data=None):
        """Clients only listen; what they send is ignored (LNbits' clients send nothing)."""

    async def authorize(self) -> str | None:
        raise NotImplementedError

    async def current(self) -> list[dict]:
        return []

    def is_final(self, data: dict) -> bool:
        return False

    async def send_current(self):
        for data in await self.current():
            await self.send_data(data)

    async def send_data(self, data: dict):
        await self.send(text_data=json.dumps(data, separators=(",", ":")))
        if self.is_final(data):
            await self.close(code=1000)

    # --- channel layer message handlers (type "push.message", "push.resync") ----------
    async def push_message(self, event):
        await self.send_data(event["data"])

    async def push_resync(self, event):
        await self.send_current()


class RefusedConsumer(AsyncWebsocketConsumer):
    """No socket at this path: the handshake is refused (403)."""

    async def connect(self):
        await self.close()
