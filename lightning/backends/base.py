"""The one small interface every Lightning backend implements.

Everything outside `lightning/` talks to a node only through `lightning.services`, which
talks to a backend only through this interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime


class NodeError(Exception):
    """Base of every error a backend raises; the message says what went wrong."""


class NodeUnavailable(NodeError):
    """The node cannot be reached (down, wrong address, network error, timeout)."""


class NodeAuthError(NodeError):
    """The node refused our credentials (bad macaroon)."""


class NodeTLSError(NodeError):
    """The node's TLS certificate does not match the one we were given."""


class InvoiceNotFound(NodeError):
    """The node has no invoice with that payment hash."""


class DuplicateInvoice(NodeError):
    """The node already has an invoice with that payment hash."""


class PaymentFailed(NodeError):
    """A payment has certainly failed (no route, unknown invoice, already paid, expired, fee
    limit too low): no money left, and none will. Safe to release what it reserved."""


class PaymentInFlight(NodeError):
    """The node may have taken the payment but cannot say yet how it ends: still in flight,
    or the node stopped answering after the payment was handed over. Never a failure: the
    money may still go out. Ask `track_payment` later; never send it again."""


class PaymentNotFound(NodeError):
    """The node has no outgoing payment with that payment hash: it was never handed over."""


@dataclass(frozen=True)
class NodeInfo:
    backend: str
    pubkey: str
    alias: str
    network: str
    block_height: int = 0  # of the chain the node follows


@dataclass(frozen=True)
class NodeInvoice:
    """An invoice as the node sees it. States use LND's names."""

    payment_hash: str
    bolt11: str
    amount_msat: int
    memo: str
    state: str  # OPEN | ACCEPTED | SETTLED | CANCELED
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None = None
    amount_paid_msat: int | None = None
    settle_index: int | None = None
    add_index: int | None = None
    preimage: str = ""  # a regular invoice's from the start; a hold invoice's once settled
    hold: bool = False
    # While ACCEPTED: the lowest expiry height of the held HTLCs. The invoice must be
    # settled or canceled before the chain reaches it.
    htlc_expiry_height: int | None = None


@dataclass(frozen=True)
class Payment:
    """A payment that succeeded."""

    payment_hash: str
    preimage: str
    amount_msat: int
    fee_msat: int


@dataclass(frozen=True)
class PaymentStatus:
    """An outgoing payment as the node sees it (LND's Payment.status names)."""

    payment_hash: str
    state: str  # IN_FLIGHT | SUCCEEDED | FAILED
    preimage: str = ""  # when SUCCEEDED
    amount_msat: int = 0
    fee_msat: int = 0  # when SUCCEEDED: the routing fee actually paid
    failure: str = ""  # when FAILED: why, in words


class Subscription(abc.ABC):
    """A live stream of settlements after a settle index (LND's SubscribeInvoices)."""

    @abc.abstractmethod
    def next_batch(self, timeout: float, max_items: int = 500) -> list[NodeInvoice]:
        """Wait up to `timeout` seconds for settlements; return those available (maybe
        none), in settle-index order. Raises NodeUnavailable when the stream broke."""

    @abc.abstractmethod
    def close(self) -> None: ...


class InvoiceUpdates(abc.ABC):
    """One invoice's state, then each change, until SETTLED or CANCELED (LND's
    SubscribeSingleInvoice). Iterate it; the iteration ends at a final state, when the
    stream's timeout passed, or when `close()` was called (from any thread: that is how a
    reader blocked waiting for the next change is stopped). Raises NodeUnavailable (or
    another NodeError) when the stream broke."""

    def __iter__(self):
        return self

    @abc.abstractmethod
    def __next__(self) -> NodeInvoice: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class LightningBackend(abc.ABC):
    name: str
    # True for a node that keeps its invoices in this gateway's own database (the dev
    # node): a new invoice's node row and ours are then written in one transaction.
    in_our_database: bool = False

    @abc.abstractmethod
    def get_info(self) -> NodeInfo: ...

    @abc.abstractmethod
    def create_invoice(
        self, amount_msat: int, memo: str, expiry_seconds: int, description_hash: str = ""
    ) -> NodeInvoice:
        """A regular invoice; the node picks the preimage. With `description_hash` (hex
        SHA-256, e.g. of an LNURL-pay metadata) the invoice carries it instead of `memo`."""

    @abc.abstractmethod
    def create_hold_invoice(
        self,
        payment_hash: str,
        amount_msat: int,
        memo: str,
        expiry_seconds: int,
        description_hash: str = "",
    ) -> NodeInvoice:
        """A hold invoice for a payment hash whose preimage only the caller knows. Raises
        DuplicateInvoice when the node has one for that hash already."""

    @abc.abstractmethod
    def settle_hold_invoice(self, preimage: str) -> None: ...

    @abc.abstractmethod
    def cancel_hold_invoice(self, payment_hash: str) -> None: ...

    @abc.abstractmethod
    def lookup_invoice(self, payment_hash: str) -> NodeInvoice:
        """Raises InvoiceNotFound when the node has no such invoice."""

    @abc.abstractmethod
    def subscribe_settlements(self, settle_index: int) -> Subscription:
        """Settlements with a settle index above `settle_index`, replayed, then live.
        Like LND, a `settle_index` of 0 may replay nothing: callers reconcile after
        subscribing."""

    @abc.abstractmethod
    def subscribe_single(self, payment_hash: str, timeout: float | None = None) -> InvoiceUpdates:
        """Follow one invoice (hold invoices need it: the settlement stream carries neither
        ACCEPTED nor CANCELED). Like LND, it waits for an invoice that does not exist yet.
        `timeout`: the stream ends after that many seconds (None: never)."""

    @abc.abstractmethod
    def pay_invoice(
        self, bolt11: str, timeout_seconds: float = 60, fee_limit_msat: int | None = None
    ) -> Payment:
        """Pay a BOLT11 invoice, spending at most `fee_limit_msat` on routing fees (None:
        the backend's default). Returns when it succeeded. Raises PaymentFailed when it
        certainly failed, PaymentInFlight when the outcome is not known yet (then only
        `track_payment` may tell it; sending again could pay twice)."""

    @abc.abstractmethod
    def track_payment(self, payment_hash: str) -> PaymentStatus:
        """The outcome of an outgoing payment sent earlier (LND's TrackPaymentV2), without
        sending anything: IN_FLIGHT, SUCCEEDED or FAILED. Raises PaymentNotFound when the
        node never took a payment for this hash."""

    def close(self) -> None:  # noqa: B027 (most backends hold nothing to release)
        """Release connections; the backend may be used again afterwards."""
