"""The LND backend: LND over gRPC, authenticated by its TLS certificate and a macaroon.

It uses the lnrpc / invoicesrpc / routerrpc stubs that lnd-grpc-client generates, not that
package's client, which prints and returns None on errors, opens a channel per call and
exits the process when credentials are missing. Here one channel lives as long as the
backend, every unary call has a deadline, and every gRPC error becomes one of the base
exceptions with a message that says what to check.
"""

from __future__ import annotations

import math
import queue
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import grpc
from cryptography import x509
from django.conf import settings
from lndgrpc.compiled import (
    invoices_pb2,
    invoices_pb2_grpc,
    lightning_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from lndgrpc.compiled import lightning_pb2 as ln

from lightning import invoice_codec

from .base import (
    DuplicateInvoice,
    InvoiceNotFound,
    InvoiceUpdates,
    LightningBackend,
    NodeAuthError,
    NodeError,
    NodeInfo,
    NodeInvoice,
    NodeTLSError,
    NodeUnavailable,
    Payment,
    PaymentFailed,
    PaymentInFlight,
    PaymentNotFound,
    PaymentStatus,
    Subscription,
)

CHANNEL_OPTIONS = [
    # gRPC's reconnect backoff grows to two minutes and calls fail at once while it waits,
    # so after an LND restart the watcher would stay blind long after the node is back.
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # Pings notice a connection dropped silently under a long-lived invoice stream. LND
    # allows a client ping every 5 s by default (grpc.client-ping-min-wait).
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]
TLS_WORDS = ("ssl", "tls", "handshake", "certificate")
FINAL_STATES = ("SETTLED", "CANCELED")
FEE_LIMIT_FLOOR_SAT = 10  # small payments still find a route
FEE_LIMIT_DIVISOR = 100  # at most 1% of the amount in routing fees
# SendPaymentV2 errors before any update: these codes are LND refusing the request (it took
# nothing) unless the words say the stream broke; a connection never made sent nothing.
REFUSALS = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNKNOWN,  # LND's plain errors: "invoice expired", "self-payments ..."
)
BROKEN_STREAM_WORDS = ("stream removed", "socket closed", "connection reset", "goaway", "eof")
NOT_CONNECTED_WORDS = ("failed to connect", "connection refused", "dns resolution failed")
FAILURE_REASONS = {
    "FAILURE_REASON_TIMEOUT": "no route was found before the payment timeout",
    "FAILURE_REASON_NO_ROUTE": "no route to the destination",
    "FAILURE_REASON_ERROR": "an unexpected error on the route",
    "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS": (
        "the recipient rejected it (unknown, expired or already paid invoice, or wrong amount)"
    ),
    "FAILURE_REASON_INSUFFICIENT_BALANCE": "not enough outbound liquidity",
}


def _read_cert(value: str) -> bytes:
    value = value.strip()
    if not value:
        raise NodeError("LND_TLS_CERT is not set: give the path of LND's tls.cert or its PEM text")
    if value.startswith("-----BEGIN"):
        pem = value.encode()
    else:
        path = Path(value).expanduser()
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise NodeError(f"LND_TLS_CERT: cannot read {path}: {exc.strerror}") from exc
    try:
        x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise NodeTLSError("LND_TLS_CERT is not a PEM certificate (LND's tls.cert)") from None
    return pem


def _read_macaroon(value: str) -> str:
    """The macaroon as hex; a hex value is taken as is (checked first: a long hex string
    is no valid file name), anything else is the path of the binary macaroon file."""
    value = value.strip()
    if not value:
        raise NodeError("LND_MACAROON is not set: give the path of LND's admin.macaroon or its hex")
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", value):
        return value.lower()
    path = Path(value).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NodeError(
            f"LND_MACAROON: cannot read {path}: {exc.strerror} (give a file path or hex)"
        ) from exc
    if not data:
        raise NodeError(f"LND_MACAROON: {path} is empty")
    return data.hex()


class _MacaroonAuth(grpc.AuthMetadataPlugin):
    def __init__(self, macaroon_hex: str):
        self._metadata = (("macaroon", macaroon_hex),)

    def __call__(self, context, callback):
        callback(self._metadata, None)


class _Stubs(NamedTuple):
    lightning: lightning_pb2_grpc.LightningStub
    invoices: invoices_pb2_grpc.InvoicesStub
    router: router_pb2_grpc.RouterStub


def _timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _to_node_invoice(invoice: ln.Invoice) -> NodeInvoice:
    state = ln.Invoice.InvoiceState.Name(invoice.state)
    settled = state == "SETTLED"
    created_at = _timestamp(invoice.creation_date)
    held = [h.expiry_height for h in invoice.htlcs if h.state == ln.InvoiceHTLCState.ACCEPTED]
    return NodeInvoice(
        payment_hash=invoice.r_hash.hex(),
        bolt11=invoice.payment_request,
        amount_msat=invoice.value_msat,
        memo=invoice.memo,
        state=state,
        created_at=created_at,
        expires_at=created_at + timedelta(seconds=invoice.expiry),
        settled_at=_timestamp(invoice.settle_date) if settled and invoice.settle_date else None,
        amount_paid_msat=invoice.amt_paid_msat or None,
        settle_index=invoice.settle_index or None,
        add_index=invoice.add_index or None,
        # LND keeps a regular invoice's preimage from the start (an internal payment needs
        # it); a hold invoice's only once it is settled.
        preimage=invoice.r_preimage.hex(),
        # lnrpc.Invoice has no hold flag; only a hold invoice is unsettled with no preimage.
        hold=not settled and not invoice.r_preimage,
        htlc_expiry_height=min(held) if held and state == "ACCEPTED" else None,
    )


def _failure(reason: int) -> str:
    if reason not in ln.PaymentFailureReason.values():
        return f"failure reason {reason}"
    name = ln.PaymentFailureReason.Name(reason)
    return f"{FAILURE_REASONS.get(name, name)} ({name})"


def _to_payment_status(payment: ln.Payment) -> PaymentStatus:
    state = ln.Payment.PaymentStatus.Name(payment.status)
    if state not in ("SUCCEEDED", "FAILED"):
        state = "IN_FLIGHT"  # UNKNOWN (legacy) and INITIATED (LND 0.18) are not final
    return PaymentStatus(
        payment_hash=payment.payment_hash,
        state=state,
        preimage=payment.payment_preimage if state == "SUCCEEDED" else "",
        amount_msat=payment.value_msat,
        fee_msat=payment.fee_msat if state == "SUCCEEDED" else 0,
        failure=_failure(payment.failure_reason) if state == "FAILED" else "",
    )


class LndSubscription(Subscription):
    """SubscribeInvoices read by a background thread into a queue, so that `next_batch` can
    wait with a timeout (a gRPC stream iterator cannot)."""

    def __init__(self, call, settle_index: int, error: Callable[[grpc.RpcError], NodeError]):
        self._call = call
        self._cursor = settle_index
        self._error = error
        self._queue: queue.Queue[NodeInvoice | NodeError] = queue.Queue()
        self._failure: NodeError | None = None
        self._closed = threading.Event()
        threading.Thread(target=self._read, name="lnd-invoice-stream", daemon=True).start()

    def _read(self) -> None:
        try:
            for invoice in self._call:
                # The stream also carries adds, and a replayed add may show a settled invoice.
                if invoice.state == ln.Invoice.SETTLED and invoice.settle_index > self._cursor:
                    self._cursor = invoice.settle_index
                    self._queue.put(_to_node_invoice(invoice))
            failure = NodeUnavailable("LND ended the invoice stream")
        except grpc.RpcError as exc:
            failure = self._error(exc)
        if not self._closed.is_set():
            self._queue.put(failure)

    def next_batch(self, timeout: float, max_items: int = 500) -> list[NodeInvoice]:
        if self._failure is not None:
            raise self._failure
        if self._closed.is_set():
            return []
        try:
            items = [self._queue.get(timeout=max(timeout, 0))]
        except queue.Empty:
            return []
        while len(items) < max_items:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        batch = []
        for item in items:
            if isinstance(item, NodeError):
                self._failure = item
                break
            batch.append(item)
        if not batch and self._failure is not None:
            raise self._failure
        return batch

    def close(self) -> None:
        self._closed.set()
        self._call.cancel()


class LndInvoiceUpdates(InvoiceUpdates):
    """SubscribeSingleInvoice as an iterator that `close()` stops from any thread (it
    cancels the call, which wakes a reader blocked on it)."""

    def __init__(self, call, error: Callable[[grpc.RpcError], NodeError]):
        self._call = call
        self._error = error
        self._done = False

    def __next__(self) -> NodeInvoice:
        if self._done:
            raise StopIteration
        try:
            update = _to_node_invoice(next(self._call))
        except StopIteration:
            self.close()
            raise
        except grpc.RpcError as exc:
            closed = self._done
            self.close()
            if closed or exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise StopIteration from None
            raise self._error(exc) from exc
        if update.state in FINAL_STATES:
            self.close()
        return update

    def close(self) -> None:
        self._done = True
        self._call.cancel()


class LndBackend(LightningBackend):
    """`tls_cert`: PEM text or the path of LND's tls.cert; `macaroon`: hex or the path of a
    macaroon file. Nothing is dialled until the first call."""

    name = "lnd"

    def __init__(self, host: str, tls_cert: str, macaroon: str, timeout_seconds: float = 10.0):
        if not host:
            raise NodeError("LND_GRPC_HOST is not set: give LND's gRPC host:port")
        self.host = host
        self.timeout = timeout_seconds
        self._credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=_read_cert(tls_cert)),
            grpc.metadata_call_credentials(_MacaroonAuth(_read_macaroon(macaroon))),
        )
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: _Stubs | None = None

    @classmethod
    def from_settings(cls) -> LndBackend:
        return cls(
            settings.LND_GRPC_HOST,
            settings.LND_TLS_CERT,
            settings.LND_MACAROON,
            settings.LND_TIMEOUT_SECONDS,
        )

    def _node(self) -> _Stubs:
        with self._lock:
            if self._stubs is None:
                channel = grpc.secure_channel(self.host, self._credentials, CHANNEL_OPTIONS)
                self._channel = channel
                self._stubs = _Stubs(
                    lightning_pb2_grpc.LightningStub(channel),
                    invoices_pb2_grpc.InvoicesStub(channel),
                    router_pb2_grpc.RouterStub(channel),
                )
            return self._stubs

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stubs = None

    def _error(self, exc: grpc.RpcError, refused: type[NodeError] = NodeError) -> NodeError:
        """`refused` is the exception for LND turning the request down (not a transport,
        credential or lookup failure): PaymentFailed where paying or settling is refused."""
        code, details = exc.code(), exc.details() or ""
        lowered = details.lower()
        if code == grpc.StatusCode.UNAVAILABLE and any(word in lowered for word in TLS_WORDS):
            return NodeTLSError(
                f"TLS handshake with LND at {self.host} failed: check LND_TLS_CERT ({details})"
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return NodeUnavailable(f"cannot reach LND at {self.host}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return NodeUnavailable(f"LND at {self.host} did not answer within {self.timeout:g}s")
        if code == grpc.StatusCode.CANCELLED:
            return NodeUnavailable(f"the call to LND at {self.host} was cancelled: {details}")
        # Older LNDs send macaroon and lookup errors with status UNKNOWN: match the text too.
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or any(
            word in lowered for word in ("macaroon", "verification failed")
        ):
            return NodeAuthError(f"LND rejected the macaroon: {details}")
        if code == grpc.StatusCode.NOT_FOUND or "unable to locate invoice" in lowered:
            return InvoiceNotFound(f"LND has no such invoice: {details}")
        return refused(f"LND refused the request ({code.name}): {details}")

    def _unary(self, method, request, refused: type[NodeError] = NodeError):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, refused) from exc

    def _lookup(self, r_hash: bytes) -> NodeInvoice:
        return _to_node_invoice(
            self._unary(self._node().lightning.LookupInvoice, ln.PaymentHash(r_hash=r_hash))
        )

    def get_info(self) -> NodeInfo:
        info = self._unary(self._node().lightning.GetInfo, ln.GetInfoRequest())
        return NodeInfo(
            backend=self.name,
            pubkey=info.identity_pubkey,
            alias=info.alias,
            network=info.chains[0].network if info.chains else "",
            block_height=info.block_height,
        )

    def create_invoice(
        self, amount_msat: int, memo: str, expiry_seconds: int, description_hash: str = ""
    ) -> NodeInvoice:
        fields = dict(value_msat=amount_msat, expiry=expiry_seconds)
        if description_hash:  # LND refuses a memo and a description hash together
            fields["description_hash"] = bytes.fromhex(description_hash)
        else:
            fields["memo"] = memo
        added = self._unary(self._node().lightning.AddInvoice, ln.Invoice(**fields))
        return self._lookup(added.r_hash)

    def create_hold_invoice(
        self,
        payment_hash: str,
        amount_msat: int,
        memo: str,
        expiry_seconds: int,
        description_hash: str = "",
    ) -> NodeInvoice:
        r_hash = bytes.fromhex(payment_hash)
        fields = dict(hash=r_hash, value_msat=amount_msat, expiry=expiry_seconds)
        if description_hash:
            fields["description_hash"] = bytes.fromhex(description_hash)
        else:
            fields["memo"] = memo
        try:
            self._unary(
                self._node().invoices.AddHoldInvoice, invoices_pb2.AddHoldInvoiceRequest(**fields)
            )
        except NodeError as exc:
            if "already exists" in str(exc):
                raise DuplicateInvoice(str(exc)) from exc
            raise
        return self._lookup(r_hash)

    def settle_hold_invoice(self, preimage: str) -> None:
        self._unary(
            self._node().invoices.SettleInvoice,
            invoices_pb2.SettleInvoiceMsg(preimage=bytes.fromhex(preimage)),
            refused=PaymentFailed,
        )

    def cancel_hold_invoice(self, payment_hash: str) -> None:
        self._unary(
            self._node().invoices.CancelInvoice,
            invoices_pb2.CancelInvoiceMsg(payment_hash=bytes.fromhex(payment_hash)),
            refused=PaymentFailed,
        )

    def lookup_invoice(self, payment_hash: str) -> NodeInvoice:
        return self._lookup(bytes.fromhex(payment_hash))

    def subscribe_settlements(self, settle_index: int) -> Subscription:
        """LND replays nothing for a settle index of 0 (the proto says so), only after 1 or
        more: a watcher starting from 0 relies on its reconciliation for earlier payments."""
        call = self._node().lightning.SubscribeInvoices(
            ln.InvoiceSubscription(settle_index=settle_index)
        )
        return LndSubscription(call, settle_index, self._error)

    def subscribe_single(self, payment_hash: str, timeout: float | None = None) -> InvoiceUpdates:
        """The invoice's state, then each change, until SETTLED or CANCELED; the iteration
        also ends when `timeout` seconds have passed. Hold invoices need this: LND puts no
        ACCEPTED (nor CANCELED) on SubscribeInvoices. LND waits for an invoice that does
        not exist yet. Closing the iterator cancels the stream."""
        call = self._node().invoices.SubscribeSingleInvoice(
            invoices_pb2.SubscribeSingleInvoiceRequest(r_hash=bytes.fromhex(payment_hash)),
            timeout=timeout,
        )
        return LndInvoiceUpdates(call, self._error)

    def pay_invoice(
        self, bolt11: str, timeout_seconds: float = 60, fee_limit_msat: int | None = None
    ) -> Payment:
        """SendPaymentV2, waiting up to `timeout_seconds` for the outcome. PaymentFailed
        only when LND says it failed or refused to take it; PaymentInFlight whenever it may
        have taken it and the outcome is not known (still in flight, or the call broke);
        NodeUnavailable, NodeTLSError or NodeAuthError only when nothing reached LND."""
        try:
            amount_msat = int(invoice_codec.decode_invoice(bolt11).amount_msat or 0)
        except ValueError as exc:
            raise PaymentFailed(str(exc)) from exc
        if fee_limit_msat is None:
            fee_limit_msat = max(FEE_LIMIT_FLOOR_SAT * 1000, amount_msat // FEE_LIMIT_DIVISOR)
        if fee_limit_msat < 0:
            raise ValueError("fee_limit_msat cannot be negative")
        request = router_pb2.SendPaymentRequest(
            payment_request=bolt11,
            timeout_seconds=max(1, math.ceil(timeout_seconds)),
            fee_limit_msat=fee_limit_msat,
        )
        # The deadline is ours: LND keeps a payment going after its caller has gone.
        call = self._node().router.SendPaymentV2(request, timeout=timeout_seconds)
        taken = False  # an update came: LND has the payment
        try:
            for update in call:
                taken = True
                if update.status == ln.Payment.SUCCEEDED:
                    return Payment(
                        payment_hash=update.payment_hash,
                        preimage=update.payment_preimage,
                        amount_msat=update.value_msat,
                        fee_msat=update.fee_msat,
                    )
                if update.status == ln.Payment.FAILED:
                    raise PaymentFailed(f"payment failed: {_failure(update.failure_reason)}")
        except grpc.RpcError as exc:
            raise self._payment_error(exc, taken, timeout_seconds) from exc
        finally:
            call.cancel()
        raise PaymentInFlight("LND ended the payment stream before the payment was final")

    def _payment_error(self, exc: grpc.RpcError, taken: bool, timeout: float) -> NodeError:
        code, details = exc.code(), exc.details() or ""
        lowered = details.lower()
        if code == grpc.StatusCode.ALREADY_EXISTS and "already paid" in lowered:
            # LND has a succeeded payment for this hash and took nothing this time. Callers
            # never re-send (after an unknown outcome they track), so it was not theirs.
            return PaymentFailed(f"invoice is already paid: {details}")
        if code == grpc.StatusCode.ALREADY_EXISTS:  # "payment is in transition"
            return PaymentInFlight(f"LND has this payment in flight already: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PaymentInFlight(
                f"payment still in flight after {timeout:g}s: outcome not known yet"
            )
        if not taken:
            error = self._error(exc, refused=PaymentFailed)
            if isinstance(error, NodeTLSError | NodeAuthError):
                return error  # refused before the call reached the router
            if isinstance(error, NodeUnavailable) and any(
                words in lowered for words in NOT_CONNECTED_WORDS
            ):
                return error  # no connection was made: nothing was sent
            transport = isinstance(error, NodeUnavailable) or any(
                words in lowered for words in BROKEN_STREAM_WORDS
            )
            if not transport and code in REFUSALS:  # LND refused it, took nothing
                return PaymentFailed(f"LND refused the payment ({code.name}): {details}")
        return PaymentInFlight(
            f"the payment call to LND at {self.host} broke ({code.name}: {details}): "
            "LND may have the payment, track it"
        )

    def track_payment(self, payment_hash: str, wait_seconds: float = 0) -> PaymentStatus:
        """TrackPaymentV2: the payment's state now, or with `wait_seconds`, its first final
        state within that time (else its state then). Raises PaymentNotFound when LND
        never took a payment for this hash, NodeUnavailable when it cannot be asked."""
        call = self._node().router.TrackPaymentV2(
            router_pb2.TrackPaymentRequest(
                payment_hash=bytes.fromhex(payment_hash), no_inflight_updates=False
            ),
            timeout=wait_seconds + self.timeout,
        )
        waited = threading.Event()
        timer = threading.Timer(wait_seconds, lambda: (waited.set(), call.cancel()))
        status = None
        try:
            for update in call:
                if status is None and wait_seconds > 0:
                    timer.start()  # the wait starts once LND has told the state
                status = _to_payment_status(update)
                if status.state != "IN_FLIGHT" or wait_seconds <= 0:
                    return status
        except grpc.RpcError as exc:
            if status is not None and waited.is_set():
                return status  # still in flight when the wait ended
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise PaymentNotFound(
                    f"LND has no payment for {payment_hash}: {exc.details()}"
                ) from exc
            raise self._error(exc) from exc
        finally:
            timer.cancel()
            call.cancel()
        if status is None:
            raise NodeUnavailable("LND ended the payment stream without a word")
        return status
