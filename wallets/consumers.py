"""LNbits' websocket, `/api/v1/ws/{id}`: `id` is a wallet's invoice or admin key, or a
payment hash (wallets.live says what each gets).

- A key socket gets every settled incoming payment of the wallet from the moment it opens.
  A client that was away asks for what it missed with `?since=<unix time>` (our addition;
  LNbits' clients that do not send it get only what comes after): the settled incoming
  payments since then are sent first, oldest first, each once.
- A payment hash socket gets the payment's final status; if it was already final when the
  socket opened, at once.
An unknown or revoked key is refused at the handshake (403), as is a malformed id; a key
revoked while its socket is open closes the socket (code 4401) at the next payment."""

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from checkout.models import ApiKey
from checkout.selectors import active_api_key
from checkout.services import hash_key
from realtime.consumers import PushConsumer

from . import live, services
from .models import Payment

HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
CLOSE_REVOKED = 4401
REPLAY_LIMIT = 100


@database_sync_to_async
def _wallet_of_key(raw: str):
    """(the key's id, its merchant's wallet), or None for an unknown or revoked key."""
    key = active_api_key(hash_key(raw))
    return (key.pk, services.wallet_for(key.merchant)) if key is not None else None


@database_sync_to_async
def _key_is_live(key_id: int) -> bool:
    return ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).exists()


@database_sync_to_async
def _final_status(payment_hash: str) -> list[dict]:
    payments = Payment.objects.filter(payment_hash=payment_hash, status__in=live.FINAL)
    found = payments.order_by("-status").first()  # "success" before "failed"
    return [live.hash_message(found)] if found is not None else []


@database_sync_to_async
def _settled_since(wallet_id: int, since: datetime) -> list[dict]:
    payments = (
        Payment.objects.filter(
            wallet_id=wallet_id,
            direction=Payment.Direction.IN,
            status=Payment.Status.SUCCESS,
            settled_at__gt=since,
        )
        .select_related("wallet")
        .order_by("settled_at", "pk")[:REPLAY_LIMIT]
    )
    return [live.wallet_message(p, p.wallet.balance_msat) for p in payments]


class WalletConsumer(PushConsumer):
    payment_hash = None
    wallet_id = None

    async def authorize(self):
        ident = self.scope["url_route"]["kwargs"]["id"]
        self._sent: set[str] = set()
        if HEX64.match(ident):
            self.payment_hash = ident.lower()
            return live.payment_group(self.payment_hash)
        found = await _wallet_of_key(ident) if 0 < len(ident) <= 200 else None
        if found is None:
            return None
        self.key_id, wallet = found
        self.wallet_id = wallet.pk
        return live.wallet_group(wallet.pk)

    def _since(self) -> datetime | None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            return datetime.fromtimestamp(float(query["since"][0]), tz=UTC)
        except (KeyError, ValueError, OverflowError, OSError):
            return None

    async def current(self):
        if self.payment_hash is not None:
            return await _final_status(self.payment_hash)
        since = self._since()
        return await _settled_since(self.wallet_id, since) if since is not None else []

    async def push_message(self, event):
        """A key revoked while its socket was open: the socket closes instead of sending
        (one query per payment, not per socket and second)."""
        if self.wallet_id is not None and not await _key_is_live(self.key_id):
            await self.close(code=CLOSE_REVOKED)
            return
        await super().push_message(event)

    async def send_data(self, data):
        payment = data.get("payment")
        if payment is not None:
            # A replayed payment may come again in a message: each is sent once.
            if payment["payment_hash"] in self._sent:
                return
            self._sent.add(payment["payment_hash"])
        elif self.payment_hash is not None:
            if data.get("status") in self._sent:
                return
            self._sent.add(data.get("status"))
        await super().send_data(data)
