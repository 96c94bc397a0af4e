"""The embedded dev node: a Lightning "node" that lives in the gateway's database.

It mints real BOLT11 invoices (regtest) signed with a key kept in the data folder, keeps
its own ledger (DevNodeInvoice) the way a node keeps its database, hands out a gap-free
settle index, and pays its own invoices on request, so a demo and the tests can pay.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from lightning import invoice_codec
from lightning.models import DevNodeCounter, DevNodeInvoice

from .base import (
    InvoiceNotFound,
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
        preimage=row.preimage if row.state == DevNodeInvoice.State.SETTLED else "",
        hold=row.hold,
    )


class DevNodeSubscription(Subscription):
    def __init__(self, settle_index: int):
        self.cursor = settle_index
        self.closed = False

    def next_batch(self, timeout: float, max_items: int = 500) -> list[NodeInvoice]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            try:
                rows = list(
                    DevNodeInvoice.objects.filter(settle_index__gt=self.cursor).order_by(
                        "settle_index"
                    )[:max_items]
                )
            except DatabaseError as exc:
                raise NodeUnavailable(f"dev node database unavailable: {exc}") from exc
            if rows:
                self.cursor = rows[-1].settle_index
                return [_to_node_invoice(r) for r in rows]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(settings.DEVNODE_POLL_SECONDS, remaining))
        return []

    def close(self) -> None:
        self.closed = True


class DevNodeBackend(LightningBackend):
    name = "devnode"

    def __init__(self):
        self.key = invoice_codec.load_or_create_key(settings.DATA_DIR / "devnode.key")
        self.pubkey = invoice_codec.node_pubkey(self.key)

    def get_info(self) -> NodeInfo:
        try:
            DevNodeCounter.objects.exists()
        except DatabaseError as exc:
            raise NodeUnavailable(f"dev node database unavailable: {exc}") from exc
        return NodeInfo(backend=self.name, pubkey=self.pubkey, alias=ALIAS, network=NETWORK)

    def _add(self, payment_hash, preimage, amount_msat, memo, expiry_seconds, hold):
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
        )
        created_at = datetime.fromtimestamp(created, tz=UTC)
        row = DevNodeInvoice.objects.create(
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
        return _to_node_invoice(row)

    def create_invoice(self, amount_msat, memo, expiry_seconds):
        preimage = secrets.token_bytes(32)
        return self._add(
            hashlib.sha256(preimage).hexdigest(),
            preimage.hex(),
            amount_msat,
            memo,
            expiry_seconds,
            False,
        )

    def create_hold_invoice(self, payment_hash, amount_msat, memo, expiry_seconds):
        return self._add(payment_hash, "", amount_msat, memo, expiry_seconds, True)

    def lookup_invoice(self, payment_hash):
        try:
            return _to_node_invoice(DevNodeInvoice.objects.get(payment_hash=payment_hash))
        except DevNodeInvoice.DoesNotExist:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}") from None

    def _settle(self, row: DevNodeInvoice, preimage: str, amount_paid_msat: int) -> None:
        """Must run inside a transaction that locked the counter row first."""
        counter = self._lock_counter()
        counter.last_settle_index += 1
        counter.save(update_fields=["last_settle_index"])
        row.state = DevNodeInvoice.State.SETTLED
        row.preimage = preimage
        row.settle_index = counter.last_settle_index
        row.settled_at = timezone.now()
        row.amount_paid_msat = amount_paid_msat
        row.save(
            update_fields=["state", "preimage", "settle_index", "settled_at", "amount_paid_msat"]
        )

    def settle_hold_invoice(self, preimage):
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        with transaction.atomic():
            self._lock_counter()
            row = self._locked_row(payment_hash)
            if row.state != DevNodeInvoice.State.ACCEPTED:
                raise PaymentFailed(f"hold invoice is {row.state}, not ACCEPTED: cannot settle")
            self._settle(row, preimage, row.amount_paid_msat)

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
        try:
            decoded = invoice_codec.decode_invoice(bolt11)
        except ValueError as exc:
            raise PaymentFailed(str(exc)) from exc
        with transaction.atomic():
            # Lock order (counter, then invoice) is the same as in settle_hold_invoice.
            self._lock_counter()
            try:
                row = self._locked_row(decoded.payment_hash)
            except InvoiceNotFound:
                raise PaymentFailed("the dev node can only pay invoices it issued") from None
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
                row.save(update_fields=["state", "amount_paid_msat"])
            else:
                self._settle(row, row.preimage, row.amount_msat)
        return Payment(
            payment_hash=row.payment_hash,
            preimage=row.preimage,
            amount_msat=row.amount_msat,
            fee_msat=0,
        )

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
