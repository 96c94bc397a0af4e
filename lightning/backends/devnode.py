"""The embedded dev node: a Lightning "node" that lives in the gateway's database.

It mints real BOLT11 invoices (regtest) signed with a key kept in the data folder, keeps
its own ledger (DevNodeInvoice) the way a node keeps its database, hands out a gap-free
settle index, and pays its own invoices on request, so a demo and the tests can pay.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from config.pglisten import connection_params
from config.prepared import Prepared, columns, insert, update
from lightning import invoice_codec
from lightning.models import DevNodeCounter, DevNodeInvoice

from .base import (
    DuplicateInvoice,
    InvoiceNotFound,
    InvoiceUpdates,
    LightningBackend,
    NodeInfo,
    NodeInvoice,
    NodeUnavailable,
    Payment,
    PaymentFailed,
    PaymentNotFound,
    PaymentStatus,
    Subscription,
)

NETWORK = "regtest"
ALIAS = "zapgate-devnode"
# Like LND (invoices.holdexpirydelta), the node fails a held HTLC this many blocks before it
# expires, whatever the invoice's owner does.
HOLD_EXPIRY_DELTA = 12
FINAL_STATES = (DevNodeInvoice.State.SETTLED, DevNodeInvoice.State.CANCELED)


def _to_node_invoice(row: DevNodeInvoice) -> NodeInvoice:
    return NodeInvoice(
        payment_hash=row.payment_hash,
        bolt11=row.bolt11,
        amount_msat=row.amount_msat,
        memo=row.memo,
        state=row.state,
        created_at=row.created_at,
        expires_at=row.expires_at,
        settled_at=row.settled_at,
        amount_paid_msat=row.amount_paid_msat,
        settle_index=row.settle_index,
        add_index=row.pk,
        preimage=row.preimage,  # as LND: known from the start, unless a hold invoice
        hold=row.hold,
        htlc_expiry_height=(
            row.htlc_expiry_height if row.state == DevNodeInvoice.State.ACCEPTED else None
        ),
    )


def _last_settle_index() -> int:
    """The newest settle index handed out (the counter row, updated in the transaction of
    each settlement): the stream polls this one row by its key in plain SQL, which costs a
    fraction of building the query for the settlements themselves, so it can look often."""
    table = connection.ops.quote_name(DevNodeCounter._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT last_settle_index FROM {table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else 0


def _state_of(payment_hash: str) -> tuple[str, int | None] | None:
    """An invoice's (state, htlc_expiry_height), polled the same cheap way."""
    table = connection.ops.quote_name(DevNodeInvoice._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT state, htlc_expiry_height FROM {table} WHERE payment_hash = %s",
            [payment_hash],
        )
        row = cursor.fetchone()
    return tuple(row) if row else None


_settled_after = Prepared(
    lambda index: (
        DevNodeInvoice.objects.filter(settle_index__gt=index)
        .order_by("settle_index")
        .values_list(*columns(DevNodeInvoice))[:500]
    ),
    integers=True,
)
_invoice_to_pay = Prepared(
    lambda payment_hash: (
        DevNodeInvoice.objects.select_for_update()
        .filter(payment_hash=payment_hash)
        .values_list(*columns(DevNodeInvoice))
    )
)

SETTLED_CHANNEL = "zapgate_devnode_settled"


class _SettleListener:
    """On PostgreSQL, a LISTEN connection of its own that a settlement's NOTIFY (sent in
    its transaction) wakes: the stream then reads at once instead of at its next poll."""

    def __init__(self):
        import psycopg

        self.conn = psycopg.connect(**connection_params(connection), autocommit=True)
        self.conn.execute(f"LISTEN {SETTLED_CHANNEL}")

    def wait(self, seconds: float) -> None:
        for _ in self.conn.notifies(timeout=seconds, stop_after=1):
            pass
        # Several settlements may have notified: one read takes them all.
        for _ in self.conn.notifies(timeout=0):
            pass

    def close(self) -> None:
        self.conn.close()


class DevNodeSubscription(Subscription):
    def __init__(self, settle_index: int):
        self.cursor = settle_index
        self.closed = False
        self.listener = None

    def _wait(self, seconds: float) -> None:
        """Until a settlement may have come (PostgreSQL: its NOTIFY, or at most `seconds`),
        else one poll interval."""
        if connection.vendor != "postgresql":
            time.sleep(min(settings.DEVNODE_POLL_SECONDS, seconds))
            return
        if self.listener is None:
            # Listening before the next read: a settlement committed after it notifies.
            self.listener = _SettleListener()
            return
        self.listener.wait(seconds)

    def close(self) -> None:
        self.closed = True
        if self.listener is not None:
            try:
                self.listener.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self.listener = None

    def next_batch(self, timeout: float, max_items: int = 500) -> list[NodeInvoice]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            try:
                rows = []
                if _last_settle_index() > self.cursor:
                    rows = _settled_after.instances(DevNodeInvoice, self.cursor)[:max_items]
            except DatabaseError as exc:
                raise NodeUnavailable(f"dev node database unavailable: {exc}") from exc
            if rows:
                self.cursor = rows[-1].settle_index
                return [_to_node_invoice(r) for r in rows]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                self._wait(remaining)
            except Exception as exc:  # psycopg's errors: the listening connection broke
                self.close()
                raise NodeUnavailable(f"dev node settlement stream broke: {exc}") from exc
        return []


class DevNodeInvoiceUpdates(InvoiceUpdates):
    """SubscribeSingleInvoice for the dev node: polls the invoice's row every
    DEVNODE_POLL_SECONDS and yields each change of its state."""

    def __init__(self, payment_hash: str, timeout: float | None):
        self.payment_hash = payment_hash
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.last = None  # (state, htlc_expiry_height) last yielded
        self.closed = threading.Event()

    def __next__(self) -> NodeInvoice:
        while not self.closed.is_set():
            if self.last is not None and self.last[0] in FINAL_STATES:
                break
            try:
                seen = _state_of(self.payment_hash)
                row = None
                if seen is not None and seen != self.last:
                    row = DevNodeInvoice.objects.filter(payment_hash=self.payment_hash).first()
            except DatabaseError as exc:
                raise NodeUnavailable(f"dev node database unavailable: {exc}") from exc
            if row is not None and (row.state, row.htlc_expiry_height) != self.last:
                self.last = (row.state, row.htlc_expiry_height)
                return _to_node_invoice(row)
            wait = settings.DEVNODE_POLL_SECONDS
            if self.deadline is not None:
                wait = min(wait, self.deadline - time.monotonic())
                if wait <= 0:
                    break
            self.closed.wait(wait)
        raise StopIteration

    def close(self) -> None:
        self.closed.set()


class DevNodeBackend(LightningBackend):
    name = "devnode"
    in_our_database = True

    def __init__(self):
        self.key = invoice_codec.load_or_create_key(settings.DATA_DIR / "devnode.key")
        self.pubkey = invoice_codec.node_pubkey(self.key)

    def get_info(self) -> NodeInfo:
        try:
            counter = DevNodeCounter.objects.filter(pk=1).first() or DevNodeCounter()
        except DatabaseError as exc:
            raise NodeUnavailable(f"dev node database unavailable: {exc}") from exc
        return NodeInfo(
            backend=self.name,
            pubkey=self.pubkey,
            alias=ALIAS,
            network=NETWORK,
            block_height=counter.block_height,
        )

    def mine(self, blocks: int) -> int:
        """Advance the dev node's chain by `blocks`; like LND, the node then cancels each
        held payment within HOLD_EXPIRY_DELTA blocks of its HTLC expiry (the payer's
        payment fails). Returns the new block height."""
        if blocks < 1:
            raise ValueError("mine at least one block")
        with transaction.atomic():
            counter = self._lock_counter()
            counter.block_height += blocks
            counter.save(update_fields=["block_height"])
            DevNodeInvoice.objects.filter(
                state=DevNodeInvoice.State.ACCEPTED,
                htlc_expiry_height__lte=counter.block_height + HOLD_EXPIRY_DELTA,
            ).update(state=DevNodeInvoice.State.CANCELED)
        return counter.block_height

    def _add(self, payment_hash, preimage, amount_msat, memo, expiry_seconds, hold, desc_hash=""):
        created = int(time.time())
        payment_addr = secrets.token_hex(32)
        bolt11 = invoice_codec.encode_invoice(
            self.key,
            network=NETWORK,
            payment_hash=payment_hash,
            payment_addr=payment_addr,
            amount_msat=amount_msat,
            memo=memo,
            created_at=created,
            expiry_seconds=expiry_seconds,
            description_hash=desc_hash,
        )
        created_at = datetime.fromtimestamp(created, tz=UTC)
        row = insert(
            DevNodeInvoice(
                payment_hash=payment_hash,
                preimage=preimage,
                payment_addr=payment_addr,
                bolt11=bolt11,
                amount_msat=amount_msat,
                memo=memo,
                hold=hold,
                created_at=created_at,
                expires_at=created_at + timedelta(seconds=expiry_seconds),
            )
        )
        return _to_node_invoice(row)

    def create_invoice(self, amount_msat, memo, expiry_seconds, description_hash=""):
        preimage = secrets.token_bytes(32)
        return self._add(
            hashlib.sha256(preimage).hexdigest(),
            preimage.hex(),
            amount_msat,
            memo,
            expiry_seconds,
            False,
            description_hash,
        )

    def create_hold_invoice(
        self, payment_hash, amount_msat, memo, expiry_seconds, description_hash=""
    ):
        try:
            with transaction.atomic():
                return self._add(
                    payment_hash, "", amount_msat, memo, expiry_seconds, True, description_hash
                )
        except IntegrityError:
            raise DuplicateInvoice("invoice with payment hash already exists") from None

    def lookup_invoice(self, payment_hash):
        try:
            return _to_node_invoice(DevNodeInvoice.objects.get(payment_hash=payment_hash))
        except DevNodeInvoice.DoesNotExist:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}") from None

    def subscribe_single(self, payment_hash, timeout=None):
        return DevNodeInvoiceUpdates(payment_hash, timeout)

    @staticmethod
    def _settle(
        counter: DevNodeCounter, row: DevNodeInvoice, preimage: str, amount_paid_msat: int
    ) -> None:
        """Inside the transaction that locked `counter` (first) and `row`."""
        counter.last_settle_index += 1
        update(counter, ("last_settle_index",))
        row.state = DevNodeInvoice.State.SETTLED
        row.preimage = preimage
        row.settle_index = counter.last_settle_index
        row.settled_at = timezone.now()
        row.amount_paid_msat = amount_paid_msat
        update(row, ("state", "preimage", "settle_index", "settled_at", "amount_paid_msat"))
        if connection.vendor == "postgresql":  # wakes the streams when this commits
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, '')", [SETTLED_CHANNEL])

    def settle_hold_invoice(self, preimage):
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        with transaction.atomic():
            counter = self._lock_counter()
            row = self._locked_row(payment_hash)
            if row.state != DevNodeInvoice.State.ACCEPTED:
                raise PaymentFailed(f"hold invoice is {row.state}, not ACCEPTED: cannot settle")
            self._settle(counter, row, preimage, row.amount_paid_msat)

    def cancel_hold_invoice(self, payment_hash):
        with transaction.atomic():
            row = self._locked_row(payment_hash)
            if row.state == DevNodeInvoice.State.SETTLED:
                raise PaymentFailed("invoice already settled: cannot cancel")
            row.state = DevNodeInvoice.State.CANCELED
            row.save(update_fields=["state"])

    @staticmethod
    def _lock_counter() -> DevNodeCounter:
        counter, _ = DevNodeCounter.objects.select_for_update().get_or_create(pk=1)
        return counter

    def _locked_row(self, payment_hash) -> DevNodeInvoice:
        try:
            return DevNodeInvoice.objects.select_for_update().get(payment_hash=payment_hash)
        except DevNodeInvoice.DoesNotExist:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}") from None

    def subscribe_settlements(self, settle_index):
        return DevNodeSubscription(settle_index)

    def pay_invoice(self, bolt11, timeout_seconds=60, fee_limit_msat=None):
        """Pay one of our own invoices, as a wallet on the other side of a channel would:
        no route, so no fee and any fee limit holds. A hold invoice is left ACCEPTED and
        the Payment carries no preimage (track_payment says IN_FLIGHT until it settles)."""
        with transaction.atomic():
            # Lock order (counter, then invoice) is the same as in settle_hold_invoice.
            counter = self._lock_counter()
            row = self._invoice_to_pay(bolt11)
            if row.state == DevNodeInvoice.State.SETTLED:
                raise PaymentFailed("invoice is already paid")
            if row.state == DevNodeInvoice.State.ACCEPTED:
                raise PaymentFailed("invoice is already paid and held")
            if row.state == DevNodeInvoice.State.CANCELED:
                raise PaymentFailed("invoice was canceled")
            if row.expires_at <= timezone.now():
                raise PaymentFailed("invoice has expired")
            if row.hold:
                row.state = DevNodeInvoice.State.ACCEPTED
                row.amount_paid_msat = row.amount_msat
                # The expiry of an HTLC arriving now: the final CLTV delta from here.
                row.htlc_expiry_height = counter.block_height + invoice_codec.MIN_FINAL_CLTV_EXPIRY
                row.save(update_fields=["state", "amount_paid_msat", "htlc_expiry_height"])
            else:
                self._settle(counter, row, row.preimage, row.amount_msat)
        return Payment(
            payment_hash=row.payment_hash,
            preimage=row.preimage,
            amount_msat=row.amount_msat,
            fee_msat=0,
        )

    @staticmethod
    def _invoice_to_pay(bolt11: str) -> DevNodeInvoice:
        """The row of the invoice `bolt11`, locked. One of our own invoices, as issued, is
        recognised by its stored text (decoding and verifying it took milliseconds, on the
        path from a payment to its webhook); anything else is decoded and verified."""
        payment_hash = invoice_codec.payment_hash_of(bolt11)
        rows = _invoice_to_pay.instances(DevNodeInvoice, payment_hash) if payment_hash else []
        if rows and rows[0].bolt11 == invoice_codec.normalize(bolt11):
            return rows[0]
        try:
            decoded_hash = invoice_codec.decode_invoice(bolt11).payment_hash
        except ValueError as exc:
            raise PaymentFailed(str(exc)) from exc
        if not rows or decoded_hash != payment_hash:
            rows = _invoice_to_pay.instances(DevNodeInvoice, decoded_hash)
        if not rows:
            raise PaymentFailed("the dev node can only pay invoices it issued")
        return rows[0]

    def track_payment(self, payment_hash):
        """The dev node only ever pays its own invoices, so the invoice is the payment: a
        SETTLED one was paid, an ACCEPTED (hold) one is in flight, a hold invoice canceled
        after it was accepted failed, and anything else was never paid."""
        try:
            row = DevNodeInvoice.objects.filter(payment_hash=payment_hash).first()
        except DatabaseError as exc:
            raise NodeUnavailable(f"dev node database unavailable: {exc}") from exc
        State = DevNodeInvoice.State
        if row is not None and row.state == State.SETTLED:
            return PaymentStatus(
                payment_hash=payment_hash,
                state="SUCCEEDED",
                preimage=row.preimage,
                amount_msat=row.amount_paid_msat or row.amount_msat,
                fee_msat=0,
            )
        if row is not None and row.state == State.ACCEPTED:
            return PaymentStatus(payment_hash, "IN_FLIGHT", amount_msat=row.amount_paid_msat)
        if row is not None and row.state == State.CANCELED and row.amount_paid_msat:
            return PaymentStatus(
                payment_hash,
                "FAILED",
                amount_msat=row.amount_paid_msat,
                failure="the recipient canceled the held payment",
            )
        raise PaymentNotFound(f"the dev node never paid an invoice with hash {payment_hash}")
