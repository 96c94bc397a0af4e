"""A simulated LND: a real gRPC server that speaks the part of LND's protocol the lnd backend
uses, with LND's semantics, so that backend is exercised over real gRPC, TLS and macaroons.

No real LND can be installed on these machines; this is how the lnd path stays honest. The
node keeps its invoices in SQLite next to its TLS pair, macaroon and node key, so it can be
stopped and started again like a real node, and it can be paid "from the outside" through a
small HTTP control endpoint on loopback (`POST /pay`), standing in for a remote wallet. Its
chain is a block height kept in the same database, advanced by `POST /mine {"blocks": n}`.

Run it with `manage.py simnode --dir D` (or `python -m lightning.simnode --dir D`).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import hmac
import ipaddress
import json
import os
import queue
import secrets
import signal
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lndgrpc.compiled import invoices_pb2, invoices_pb2_grpc, lightning_pb2_grpc, router_pb2_grpc
from lndgrpc.compiled import lightning_pb2 as ln

from lightning import invoice_codec

HOST = "127.0.0.1"
NETWORK = "regtest"
ALIAS = "zapgate-simnode"
VERSION = "0.18.0-beta zapgate-simnode"
DEFAULT_EXPIRY_SECONDS = 86400  # what LND uses when AddInvoice gives no expiry
GRPC_WORKERS = 64  # every open stream holds a worker thread
START_HEIGHT = 100  # a new node's chain (regtest, past coinbase maturity)
HOLD_EXPIRY_DELTA = 12  # LND's invoices.holdexpirydelta: held HTLCs are failed this early

OPEN, SETTLED, CANCELED, ACCEPTED = (
    ln.Invoice.OPEN,
    ln.Invoice.SETTLED,
    ln.Invoice.CANCELED,
    ln.Invoice.ACCEPTED,
)
FINAL_STATES = (SETTLED, CANCELED)

Code = grpc.StatusCode
HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.FAILED_PRECONDITION: 409,
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS invoices (
    add_index INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, like LND's add index
    r_hash BLOB NOT NULL UNIQUE,
    r_preimage BLOB,  -- NULL for a hold invoice until it is settled
    value_msat INTEGER NOT NULL,
    memo TEXT NOT NULL,
    payment_request TEXT NOT NULL,
    payment_addr BLOB NOT NULL,
    state INTEGER NOT NULL,
    creation_date INTEGER NOT NULL,
    expiry INTEGER NOT NULL,
    settle_date INTEGER NOT NULL DEFAULT 0,
    settle_index INTEGER UNIQUE,
    amt_paid_msat INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS invoices_state ON invoices (state);
"""
CHAIN_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    block_height INTEGER NOT NULL
);
INSERT OR IGNORE INTO chain (id, block_height) VALUES (1, {START_HEIGHT});
"""
HTLC_COLUMNS = ("htlc_accept_height", "htlc_expiry_height")  # of the one HTLC that paid


class InvoiceError(Exception):
    """A request the node refuses, with the gRPC status LND answers it with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)


class InvoiceStore:
    """The node's invoice database, and the fan-out of its changes to open streams.

    One lock covers every read, write and publication, so a stream that registers and reads
    its backlog under the lock sees each change exactly once: in the backlog or as an event.
    """

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._add_chain()
        self._streams: set[queue.Queue] = set()  # SubscribeInvoices: adds and settles
        self._watchers: dict[bytes, set[queue.Queue]] = {}  # SubscribeSingleInvoice

    def add(self, fields: dict) -> sqlite3.Row:
        with self._lock:
            try:
                with self._db:
                    cursor = self._db.execute(
                        "INSERT INTO invoices (r_hash, r_preimage, value_msat, memo,"
                        " payment_request, payment_addr, state, creation_date, expiry)"
                        " VALUES (:r_hash, :r_preimage, :value_msat, :memo, :payment_request,"
                        " :payment_addr, :state, :creation_date, :expiry)",
                        {**fields, "state": OPEN},
                    )
            except sqlite3.IntegrityError:
                raise InvoiceError(
                    Code.ALREADY_EXISTS, "invoice with payment hash already exists"
                ) from None
            row = self._db.execute(
                "SELECT * FROM invoices WHERE add_index = ?", (cursor.lastrowid,)
            ).fetchone()
            self._publish(row, added_or_settled=True)
            return row

    def _add_chain(self) -> None:
        """The chain table and the HTLC columns (added to a database made before them)."""
        self._db.executescript(CHAIN_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(invoices)")}
        for column in HTLC_COLUMNS:
            if column not in columns:
                self._db.execute(f"ALTER TABLE invoices ADD COLUMN {column} INTEGER")
        self._db.commit()

    def block_height(self) -> int:
        with self._lock:
            return self._block_height()

    def _block_height(self) -> int:
        return self._db.execute("SELECT block_height FROM chain").fetchone()[0]

    def mine(self, blocks: int) -> int:
        """Advance the chain; like LND, fail each held HTLC (its hold invoice is canceled)
        within HOLD_EXPIRY_DELTA blocks of its expiry. Returns the new height."""
        with self._lock:
            with self._db:
                self._db.execute("UPDATE chain SET block_height = block_height + ?", (blocks,))
            height = self._block_height()
            for row in self._db.execute(
                "SELECT * FROM invoices WHERE state = ? AND htlc_expiry_height <= ?",
                (ACCEPTED, height + HOLD_EXPIRY_DELTA),
            ).fetchall():
                self._change(row, state=CANCELED)
            return height

    def lookup(self, r_hash: bytes) -> sqlite3.Row:
        with self._lock:
            self._expire_due()
            return self._get(r_hash)

    def pay(self, r_hash: bytes, amount_msat: int) -> sqlite3.Row:
        """An incoming payment: settles a regular invoice, holds (ACCEPTED) a hold invoice."""
        with self._lock:
            self._expire_due()
            row = self._get(r_hash)
            if row["state"] == CANCELED:
                expired = row["creation_date"] + row["expiry"] <= time.time()
                message = "invoice has expired" if expired else "invoice was canceled"
                raise InvoiceError(Code.FAILED_PRECONDITION, message)
            if row["state"] != OPEN:
                raise InvoiceError(Code.FAILED_PRECONDITION, "invoice is already paid")
            amount_msat = amount_msat or row["value_msat"]
            if not amount_msat:
                raise InvoiceError(
                    Code.INVALID_ARGUMENT,
                    "amount must be specified when paying a zero amount invoice",
                )
            if amount_msat < row["value_msat"]:
                raise InvoiceError(Code.INVALID_ARGUMENT, "amount is below the invoice amount")
            height = self._block_height()
            htlc = {
                "htlc_accept_height": height,
                "htlc_expiry_height": height + invoice_codec.MIN_FINAL_CLTV_EXPIRY,
            }
            if row["r_preimage"] is None:
                return self._change(row, state=ACCEPTED, amt_paid_msat=amount_msat, **htlc)
            return self._settle(row, row["r_preimage"], amount_msat, **htlc)

    def settle_hold(self, preimage: bytes) -> None:
        with self._lock:
            self._expire_due()
            row = self._get(hashlib.sha256(preimage).digest())
            if row["state"] == OPEN:
                raise InvoiceError(Code.FAILED_PRECONDITION, "invoice still open")
            if row["state"] == SETTLED:
                raise InvoiceError(Code.FAILED_PRECONDITION, "invoice already settled")
            if row["state"] == CANCELED:
                raise InvoiceError(Code.FAILED_PRECONDITION, "invoice already canceled")
            self._settle(row, preimage, row["amt_paid_msat"])

    def cancel(self, r_hash: bytes) -> None:
        with self._lock:
            self._expire_due()
            row = self._get(r_hash)
            if row["state"] == SETTLED:
                raise InvoiceError(Code.FAILED_PRECONDITION, "invoice already settled")
            if row["state"] != CANCELED:
                self._change(row, state=CANCELED)

    def expire_due(self) -> None:
        with self._lock:
            self._expire_due()

    def subscribe(self, add_index: int, settle_index: int) -> tuple[list[sqlite3.Row], queue.Queue]:
        """LND's replay: a zero index means "no backlog" (the proto says so), not "all"."""
        events: queue.Queue = queue.Queue()
        with self._lock:
            self._expire_due()
            backlog = []
            if add_index:
                backlog += self._db.execute(
                    "SELECT * FROM invoices WHERE add_index > ? ORDER BY add_index", (add_index,)
                ).fetchall()
            if settle_index:
                backlog += self._db.execute(
                    "SELECT * FROM invoices WHERE settle_index > ? ORDER BY settle_index",
                    (settle_index,),
                ).fetchall()
            self._streams.add(events)
        return backlog, events

    def watch(self, r_hash: bytes) -> tuple[sqlite3.Row | None, queue.Queue]:
        """The invoice's current state (None if it does not exist yet) and its future ones."""
        events: queue.Queue = queue.Queue()
        with self._lock:
            self._expire_due()
            row = self._db.execute("SELECT * FROM invoices WHERE r_hash = ?", (r_hash,)).fetchone()
            self._watchers.setdefault(r_hash, set()).add(events)
        return row, events

    def unsubscribe(self, events: queue.Queue) -> None:
        with self._lock:
            self._streams.discard(events)
            for r_hash, watchers in list(self._watchers.items()):
                watchers.discard(events)
                if not watchers:
                    del self._watchers[r_hash]

    def close(self) -> None:
        with self._lock:
            for events in self._streams.union(*self._watchers.values()):
                events.put(None)
            self._db.close()

    def _get(self, r_hash: bytes) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM invoices WHERE r_hash = ?", (r_hash,)).fetchone()
        if row is None:
            raise InvoiceError(Code.NOT_FOUND, "unable to locate invoice")
        return row

    def _settle(self, row: sqlite3.Row, preimage: bytes, amount_msat: int, **htlc) -> sqlite3.Row:
        (last,) = self._db.execute("SELECT COALESCE(MAX(settle_index), 0) FROM invoices").fetchone()
        return self._change(
            row,
            state=SETTLED,
            r_preimage=preimage,
            settle_index=last + 1,
            settle_date=int(time.time()),
            amt_paid_msat=amount_msat,
            **htlc,
        )

    def _change(self, row: sqlite3.Row, **fields) -> sqlite3.Row:
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        with self._db:
            self._db.execute(
                f"UPDATE invoices SET {assignments} WHERE add_index = :add_index",
                {**fields, "add_index": row["add_index"]},
            )
        row = self._get(row["r_hash"])
        self._publish(row, added_or_settled=fields["state"] == SETTLED)
        return row

    def _expire_due(self) -> None:
        """LND cancels an OPEN invoice once it expires; this node does it when next asked."""
        for row in self._db.execute(
            "SELECT * FROM invoices WHERE state = ? AND creation_date + expiry <= ?",
            (OPEN, time.time()),
        ).fetchall():
            self._change(row, state=CANCELED)

    def _publish(self, row: sqlite3.Row, added_or_settled: bool) -> None:
        # SubscribeInvoices carries adds and settles only, never ACCEPTED or CANCELED.
        for events in self._watchers.get(row["r_hash"], ()):
            events.put(row)
        if added_or_settled:
            for events in self._streams:
                events.put(row)


def invoice_message(row: sqlite3.Row) -> ln.Invoice:
    state = row["state"]
    return ln.Invoice(
        memo=row["memo"],
        r_preimage=row["r_preimage"] or b"",
        r_hash=row["r_hash"],
        value=row["value_msat"] // 1000,
        value_msat=row["value_msat"],
        settled=state == SETTLED,
        creation_date=row["creation_date"],
        settle_date=row["settle_date"],
        payment_request=row["payment_request"],
        expiry=row["expiry"],
        cltv_expiry=invoice_codec.MIN_FINAL_CLTV_EXPIRY,
        add_index=row["add_index"],
        settle_index=row["settle_index"] or 0,
        amt_paid_sat=row["amt_paid_msat"] // 1000,
        amt_paid_msat=row["amt_paid_msat"],
        state=state,
        is_keysend=False,
        payment_addr=row["payment_addr"],
        htlcs=_htlcs(row),
    )


HTLC_STATE = {
    ACCEPTED: ln.InvoiceHTLCState.ACCEPTED,
    SETTLED: ln.InvoiceHTLCState.SETTLED,
    CANCELED: ln.InvoiceHTLCState.CANCELED,
}


def _htlcs(row: sqlite3.Row) -> list[ln.InvoiceHTLC]:
    """The one HTLC that paid the invoice, if one did."""
    if row["htlc_expiry_height"] is None:
        return []
    return [
        ln.InvoiceHTLC(
            chan_id=1,
            htlc_index=row["add_index"],
            amt_msat=row["amt_paid_msat"],
            accept_height=row["htlc_accept_height"],
            expiry_height=row["htlc_expiry_height"],
            state=HTLC_STATE[row["state"]],
        )
    ]


def _updates(store: InvoiceStore, r_hash: bytes, context) -> Iterator[sqlite3.Row]:
    """An invoice's current state, then each change until it is final or the call ends."""
    row, events = store.watch(r_hash)
    try:
        if not context.add_callback(lambda: events.put(None)):
            return  # the call ended already
        if row is not None:
            yield row
        while row is None or row["state"] not in FINAL_STATES:
            try:
                update = events.get(timeout=_seconds_to_expiry(row))
            except queue.Empty:
                store.expire_due()  # publishes CANCELED to us if it ran out
                continue
            if update is None:
                return
            row = update
            yield row
    finally:
        store.unsubscribe(events)


def _seconds_to_expiry(row: sqlite3.Row | None) -> float | None:
    if row is None or row["state"] != OPEN:
        return None
    return max(0.05, row["creation_date"] + row["expiry"] - time.time() + 0.05)


def _refusals(method):
    """Answer an InvoiceError with its gRPC status, as LND answers a refused request."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except InvoiceError as exc:
            context.abort(exc.code, exc.message)

    return wrapper


def _hash32(value: bytes, what: str) -> bytes:
    if len(value) != 32:
        raise InvoiceError(Code.INVALID_ARGUMENT, f"{what} must be exactly 32 bytes")
    return value


def _amount_msat(value: int, value_msat: int) -> int:
    if value and value_msat and value * 1000 != value_msat:
        raise InvoiceError(Code.INVALID_ARGUMENT, "value and value_msat are mutually exclusive")
    amount = value_msat or value * 1000
    if amount < 0:
        raise InvoiceError(Code.INVALID_ARGUMENT, "amount cannot be negative")
    return amount


class LightningService(lightning_pb2_grpc.LightningServicer):
    def __init__(self, node: SimNode):
        self.node = node

    def GetInfo(self, request, context):
        return ln.GetInfoResponse(
            version=VERSION,
            identity_pubkey=self.node.pubkey,
            alias=ALIAS,
            synced_to_chain=True,
            synced_to_graph=True,
            chains=[ln.Chain(chain="bitcoin", network=NETWORK)],
            block_height=self.node.store.block_height(),
        )

    @_refusals
    def AddInvoice(self, request, context):
        preimage = _hash32(request.r_preimage or secrets.token_bytes(32), "payment preimage")
        row = self.node.add_invoice(
            hashlib.sha256(preimage).digest(),
            preimage,
            _amount_msat(request.value, request.value_msat),
            request.memo,
            request.expiry,
        )
        return ln.AddInvoiceResponse(
            r_hash=row["r_hash"],
            payment_request=row["payment_request"],
            add_index=row["add_index"],
            payment_addr=row["payment_addr"],
        )

    @_refusals
    def LookupInvoice(self, request, context):
        r_hash = request.r_hash
        if not r_hash:
            try:
                r_hash = bytes.fromhex(request.r_hash_str)
            except ValueError:
                raise InvoiceError(Code.INVALID_ARGUMENT, "r_hash_str is not hex") from None
        return invoice_message(self.node.store.lookup(_hash32(r_hash, "payment hash")))

    def SubscribeInvoices(self, request, context):
        store = self.node.store
        backlog, events = store.subscribe(request.add_index, request.settle_index)
        try:
            if not context.add_callback(lambda: events.put(None)):
                return
            for row in backlog:
                yield invoice_message(row)
            while (row := events.get()) is not None:
                yield invoice_message(row)
        finally:
            store.unsubscribe(events)


class InvoicesService(invoices_pb2_grpc.InvoicesServicer):
    def __init__(self, node: SimNode):
        self.node = node

    @_refusals
    def AddHoldInvoice(self, request, context):
        row = self.node.add_invoice(
            _hash32(request.hash, "payment hash"),
            None,
            _amount_msat(request.value, request.value_msat),
            request.memo,
            request.expiry,
        )
        return invoices_pb2.AddHoldInvoiceResp(
            payment_request=row["payment_request"],
            add_index=row["add_index"],
            payment_addr=row["payment_addr"],
        )

    @_refusals
    def SettleInvoice(self, request, context):
        self.node.store.settle_hold(_hash32(request.preimage, "preimage"))
        return invoices_pb2.SettleInvoiceResp()

    @_refusals
    def CancelInvoice(self, request, context):
        self.node.store.cancel(_hash32(request.payment_hash, "payment hash"))
        return invoices_pb2.CancelInvoiceResp()

    def SubscribeSingleInvoice(self, request, context):
        if len(request.r_hash) != 32:
            context.abort(Code.INVALID_ARGUMENT, "payment hash must be exactly 32 bytes")
        for row in _updates(self.node.store, request.r_hash, context):
            yield invoice_message(row)


class RouterService(router_pb2_grpc.RouterServicer):
    """Pays only this node's own invoices, as if over a channel to itself."""

    def __init__(self, node: SimNode):
        self.node = node

    def SendPaymentV2(self, request, context):
        if request.timeout_seconds <= 0:
            context.abort(Code.INVALID_ARGUMENT, "timeout_seconds must be specified")
        try:
            decoded = invoice_codec.decode_invoice(request.payment_request)
        except ValueError as exc:
            context.abort(Code.INVALID_ARGUMENT, str(exc))
        amount_msat = int(decoded.amount_msat or 0) or request.amt_msat or request.amt * 1000
        if not amount_msat:
            context.abort(
                Code.INVALID_ARGUMENT, "amount must be specified when paying a zero amount invoice"
            )
        payment = ln.Payment(
            payment_hash=decoded.payment_hash,
            payment_request=request.payment_request,
            value=amount_msat // 1000,
            value_sat=amount_msat // 1000,
            value_msat=amount_msat,
            creation_date=int(time.time()),
            creation_time_ns=time.time_ns(),
            status=ln.Payment.IN_FLIGHT,
        )
        yield payment
        try:
            row = self.node.receive(decoded, amount_msat)
        except InvoiceError as exc:
            payment.status = ln.Payment.FAILED
            payment.failure_reason = (
                ln.FAILURE_REASON_NO_ROUTE
                if exc.code == Code.NOT_FOUND
                else ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS
            )
            yield payment
            return
        if row["state"] == ACCEPTED:  # a hold invoice: in flight until its owner decides
            updates = list(_updates(self.node.store, row["r_hash"], context))
            row = updates[-1] if updates else row
        if row["state"] == SETTLED:
            payment.status = ln.Payment.SUCCEEDED
            payment.payment_preimage = row["r_preimage"].hex()
        elif row["state"] == CANCELED:
            payment.status = ln.Payment.FAILED
            payment.failure_reason = ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS
        else:
            return  # the call ended while the payment was held
        yield payment


class MacaroonCheck(grpc.ServerInterceptor):
    """Refuses every call whose `macaroon` metadata is not this node's macaroon, in hex."""

    def __init__(self, macaroon: bytes):
        self.macaroon_hex = macaroon.hex()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        given = [v for k, v in handler_call_details.invocation_metadata if k == "macaroon"]
        if not given:
            error = "expected 1 macaroon, got 0"
        elif not hmac.compare_digest(given[0].lower().encode(), self.macaroon_hex.encode()):
            error = "verification failed: signature mismatch after caveat verification"
        else:
            return handler

        def deny(request, context):
            context.abort(Code.UNAUTHENTICATED, error)

        make = (
            grpc.unary_stream_rpc_method_handler
            if handler.response_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return make(
            deny,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class ControlHandler(BaseHTTPRequestHandler):
    """`POST /pay {"bolt11": ...}`: a remote wallet paying one of the node's invoices."""

    def do_POST(self):
        if self.path == "/mine":
            self._mine()
            return
        if self.path != "/pay":
            self._answer(404, {"error": "only POST /pay exists here"})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            bolt11 = body["bolt11"]
            if not isinstance(bolt11, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self._answer(400, {"error": 'expected a JSON body {"bolt11": "<invoice>"}'})
            return
        try:
            self._answer(200, self.server.node.pay(bolt11))
        except InvoiceError as exc:
            self._answer(exc.http_status, {"error": exc.message})

    def _mine(self) -> None:
        """`POST /mine {"blocks": n}`: the chain advances n blocks (1 to 10000)."""
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            blocks = body["blocks"]
            if type(blocks) is not int or not 1 <= blocks <= 10_000:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self._answer(400, {"error": 'expected a JSON body {"blocks": <1 to 10000>}'})
            return
        self._answer(200, {"blockHeight": self.server.node.store.mine(blocks)})

    def _answer(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # tests fire many payments; a line each on stderr drowns their output


def ensure_tls_files(directory: Path) -> tuple[bytes, bytes]:
    """LND's tls.cert / tls.key: a self-signed P-256 CA certificate for loopback names,
    kept across restarts so that clients keep trusting the node."""
    cert_path, key_path = directory / "tls.cert", directory / "tls.key"
    if not (cert_path.exists() and key_path.exists()):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zapgate simnode"),
                x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=425))  # LND's 14 months
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path.read_bytes(), key_path.read_bytes()


def ensure_macaroon(path: Path) -> bytes:
    """Random bytes stand in for a real macaroon: the node only compares them."""
    if not path.exists():
        _write_private(path, secrets.token_bytes(48))
    return path.read_bytes()


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class ControlServer(ThreadingHTTPServer):
    # A real listen backlog (the default is 5): tests post many payments at once, and a
    # full backlog resets connections on a busy machine.
    request_queue_size = 128


class SimNode:
    """The simulated LND. `start()` returns once both servers listen; `port` and
    `control_port` then hold the bound ports (pass 0 to let the system pick)."""

    def __init__(self, directory: Path, port: int = 0, control_port: int = 0):
        self.directory = Path(directory)
        self.port = port
        self.control_port = control_port
        self.cert_path = self.directory / "tls.cert"
        self.macaroon_path = self.directory / "admin.macaroon"
        self.store: InvoiceStore | None = None
        self._grpc: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._control: ControlServer | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://{HOST}:{self.control_port}/pay"

    def start(self) -> SimNode:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = invoice_codec.load_or_create_key(self.directory / "node.key")
        self.pubkey = invoice_codec.node_pubkey(self._key)
        cert, key = ensure_tls_files(self.directory)
        macaroon = ensure_macaroon(self.macaroon_path)
        self.store = InvoiceStore(self.directory / "invoices.sqlite3")

        self._executor = futures.ThreadPoolExecutor(GRPC_WORKERS, thread_name_prefix="simnode")
        self._grpc = grpc.server(self._executor, interceptors=[MacaroonCheck(macaroon)])
        lightning_pb2_grpc.add_LightningServicer_to_server(LightningService(self), self._grpc)
        invoices_pb2_grpc.add_InvoicesServicer_to_server(InvoicesService(self), self._grpc)
        router_pb2_grpc.add_RouterServicer_to_server(RouterService(self), self._grpc)
        self.port = self._grpc.add_secure_port(
            self.address, grpc.ssl_server_credentials([(key, cert)])
        )
        self._grpc.start()

        self._control = ControlServer((HOST, self.control_port), ControlHandler)
        self._control.node = self
        self.control_port = self._control.server_address[1]
        threading.Thread(
            target=self._control.serve_forever,
            args=(0.05,),  # the poll interval, which is how long stop() waits for it
            name="simnode-control",
            daemon=True,
        ).start()
        (self.directory / "control.port").write_text(f"{self.control_port}\n")
        return self

    def stop(self) -> None:
        """Drop every call (clients see their streams break, as when LND goes down)."""
        if self._grpc is None:
            return
        self._control.shutdown()
        self._control.server_close()  # waits for payments in progress
        self._grpc.stop(grace=None).wait()
        self.store.close()  # wakes the streams still waiting for an event
        self._executor.shutdown(wait=True)
        (self.directory / "control.port").unlink(missing_ok=True)
        self._grpc = self._executor = self._control = self.store = None

    def add_invoice(
        self, r_hash: bytes, preimage: bytes | None, value_msat: int, memo: str, expiry: int
    ) -> sqlite3.Row:
        expiry = expiry or DEFAULT_EXPIRY_SECONDS
        created = int(time.time())
        payment_addr = secrets.token_bytes(32)
        payment_request = invoice_codec.encode_invoice(
            self._key,
            network=NETWORK,
            payment_hash=r_hash.hex(),
            payment_addr=payment_addr.hex(),
            amount_msat=value_msat,
            memo=memo,
            created_at=created,
            expiry_seconds=expiry,
        )
        return self.store.add(
            {
                "r_hash": r_hash,
                "r_preimage": preimage,
                "value_msat": value_msat,
                "memo": memo,
                "payment_request": payment_request,
                "payment_addr": payment_addr,
                "creation_date": created,
                "expiry": expiry,
            }
        )

    def receive(self, decoded, amount_msat: int = 0) -> sqlite3.Row:
        """An HTLC for a decoded invoice arriving at this node."""
        if decoded.payee != self.pubkey:
            raise InvoiceError(Code.NOT_FOUND, "unknown invoice: this node did not issue it")
        try:
            return self.store.pay(bytes.fromhex(decoded.payment_hash), amount_msat)
        except InvoiceError as exc:
            if exc.code == Code.NOT_FOUND:
                raise InvoiceError(
                    exc.code, "unknown invoice: this node has no such invoice"
                ) from None
            raise

    def pay(self, bolt11: str) -> dict:
        """Pay an invoice as a remote wallet would; a hold invoice is left ACCEPTED, and the
        payer learns no preimage until its owner settles. Raises InvoiceError."""
        try:
            decoded = invoice_codec.decode_invoice(bolt11)
        except ValueError as exc:
            raise InvoiceError(Code.INVALID_ARGUMENT, str(exc)) from exc
        row = self.receive(decoded)
        return {
            "paymentHash": row["r_hash"].hex(),
            "preimage": row["r_preimage"].hex() if row["state"] == SETTLED else None,
            "state": ln.Invoice.InvoiceState.Name(row["state"]),
        }


def control_pay(directory: Path, bolt11: str, timeout: float = 10.0) -> tuple[int, dict]:
    """Pay through the control endpoint of the sim node running in `directory`, which may
    be another process. Returns the HTTP status and the JSON answer."""
    port = int((Path(directory) / "control.port").read_text())
    request = urllib.request.Request(
        f"http://{HOST}:{port}/pay",
        data=json.dumps({"bolt11": bolt11}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def control_mine(directory: Path, blocks: int = 1, timeout: float = 10.0) -> tuple[int, dict]:
    """Mine `blocks` blocks on the sim node running in `directory` through its control
    endpoint. Returns the HTTP status and the JSON answer ({"blockHeight": n} on success)."""
    port = int((Path(directory) / "control.port").read_text())
    request = urllib.request.Request(
        f"http://{HOST}:{port}/mine",
        data=json.dumps({"blocks": blocks}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def serve(directory: Path, port: int, control_port: int = 0, out: TextIO = sys.stdout) -> None:
    """Run the node in the foreground until SIGINT or SIGTERM."""
    node = SimNode(directory, port, control_port).start()
    stopping = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in signals}
    try:
        out.write(
            f"simulated LND ({NETWORK}) {node.pubkey}\n"
            f"  gRPC:           {node.address}\n"
            f"  tls.cert:       {node.cert_path}\n"
            f"  admin.macaroon: {node.macaroon_path}\n"
            f"  control:        POST {node.control_url}\n"
            f"Point the gateway at it:\n"
            f"  LIGHTNING_BACKEND=lnd LND_GRPC_HOST={node.address}"
            f" LND_TLS_CERT={node.cert_path} LND_MACAROON={node.macaroon_path}\n"
            f"Mine blocks:    manage.py simnode_mine --dir {node.directory} <n>\n"
            f"Pay an invoice: manage.py simnode_pay --dir {node.directory} <bolt11>\n"
        )
        out.flush()
        while not stopping.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        node.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="simnode", description="Run a simulated LND (regtest) in the foreground."
    )
    parser.add_argument("--dir", required=True, type=Path, help="state directory")
    parser.add_argument("--port", type=int, default=10009, help="gRPC port (0: any free one)")
    parser.add_argument("--control-port", type=int, default=0, help="HTTP control port")
    args = parser.parse_args(argv)
    serve(args.dir, args.port, args.control_port)


if __name__ == "__main__":
    main()
