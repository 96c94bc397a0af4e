"""The hosted page's socket, `/ws/checkout/{invoiceId}`: public like the status endpoint
(the unguessable invoice id is the secret). It sends the status body of
`/checkout/{invoiceId}/status` when it opens and whenever the status changes, then closes
once the checkout is paid or expired."""

import asyncio

from channels.db import database_sync_to_async
from django.utils import timezone

from realtime.consumers import PushConsumer

from .live import group_of
from .pages import status_body
from .selectors import checkout_for_status

FINAL = ("paid", "expired")


@database_sync_to_async
def _status(invoice_id: str) -> dict | None:
    checkout = checkout_for_status(invoice_id)
    return status_body(checkout) if checkout is not None else None


class CheckoutConsumer(PushConsumer):
    _expiry_timer = None

    async def authorize(self):
        self.invoice_id = self.scope["url_route"]["kwargs"]["invoiceId"]
        if await _status(self.invoice_id) is None:
            return None
        return group_of(self.invoice_id)

    async def current(self):
        body = await _status(self.invoice_id)
        if body is None:
            return []
        if body["status"] == "unpaid" and self._expiry_timer is None:
            # Expiry is a moment, not an event: look again just after it.
            left = (
                timezone.datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
                - timezone.now()
            ).total_seconds()
            loop = asyncio.get_running_loop()
            self._expiry_timer = loop.call_later(
                max(0.0, left) + 0.5, lambda: loop.create_task(self._recheck())
            )
        return [body]

    async def _recheck(self):
        self._expiry_timer = None
        if self.group is not None:
            await self.send_current()

    def is_final(self, data):
        return data.get("status") in FINAL

    async def disconnect(self, code):
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        await super().disconnect(code)
