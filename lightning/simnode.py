"""A simulated LND: a real gRPC server that speaks the part of LND's protocol the lnd backend
uses, with LND's semantics, so that backend is exercised over real gRPC, TLS and macaroons.

No real LND can be installed on these machines; this is how the lnd path stays honest. The
node keeps its invoices in SQLite next to its TLS pair, macaroon and node key, so it can be
stopped and started again like a real node, and it can be paid "from the outside" through a
small HTTP control endpoint on loopback (`POST /pay`), standing in for a remote wallet. Its
chain is a block height kept in the same database, advanced by `POST /mine {"blocks": n}`.

It also pays, as LND does (SendPaymentV2, TrackPaymentV2): each outgoing payment is a row in
its `payments` table and proceeds in a thread of its own, whatever becomes of the call that
started it, and survives a restart. It pays its own invoices (no fee) and those of a
pretend remote payee (`POST /invoices`, signed with `remote.key`) over a pretend route that
costs ROUTE_BASE_FEE_MSAT + 0.1% of the amount, rounded up. Control rules make payments fail,
stay held in flight until released, or succeed after a delay (`POST /payments/rules`).
One gap a real node does not have: a sim node SIGKILLed in the instant between one of its own
invoices taking a payment and the payment recording it fails that payment on restart (a
killed client, or a stopped node, loses nothing).

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
import re
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
IN_FLIGHT, SUCCEEDED, FAILED = ln.Payment.IN_FLIGHT, ln.Payment.SUCCEEDED, ln.Payment.FAILED
NO_ROUTE = ln.FAILURE_REASON_NO_ROUTE
INCORRECT_PAYMENT_DETAILS = ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS
ROUTE_BASE_FEE_MSAT = 1_000  # the pretend route to the remote payee: 1 sat ...
ROUTE_FEE_PPM = 1_000  # ... plus 0.1% of the amount, rounded up to the msat
REMOTE_EXPIRY_SECONDS = 3600  # a remote payee invoice's default expiry
RULE_ACTIONS = ("fail", "hold", "delay")
RELEASE_ANSWER_WAIT_SECONDS = 2  # a release answers with the outcome if it comes this soon
POLL_SECONDS = 0.1  # how often a waiting payment looks at its row and at stop()

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

PAYMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    payment_index INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_hash BLOB NOT NULL UNIQUE,
    attempt INTEGER NOT NULL DEFAULT 1,  -- a new attempt may follow a FAILED one, as in LND
    payment_request TEXT NOT NULL,
    value_msat INTEGER NOT NULL,
    fee_msat INTEGER NOT NULL DEFAULT 0,
    fee_limit_msat INTEGER NOT NULL,
    status INTEGER NOT NULL,  -- lnrpc.Payment.PaymentStatus
    failure_reason INTEGER NOT NULL DEFAULT 0,  -- lnrpc.PaymentFailureReason
    preimage BLOB,
    creation_time_ns INTEGER NOT NULL,
    held INTEGER NOT NULL DEFAULT 0,  -- a hold rule: in flight until released
    release_at REAL,  -- a delay rule: routed at this time
    forced_failure INTEGER,  -- a fail rule: fails with this reason
    delivered INTEGER NOT NULL DEFAULT 0  -- the HTLC reached one of our own invoices
);
CREATE INDEX IF NOT EXISTS payments_status ON payments (status);
CREATE TABLE IF NOT EXISTS remote_invoices (
    payment_hash BLOB PRIMARY KEY,
    preimage BLOB NOT NULL,
    value_msat INTEGER NOT NULL,
    memo TEXT NOT NULL,
    payment_request TEXT NOT NULL,
    creation_date INTEGER NOT NULL,
    expiry INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'OPEN',  -- OPEN | PAID
    amt_paid_msat INTEGER
);
CREATE TABLE IF NOT EXISTS payment_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,  -- fail | hold | delay
    payment_hash BLOB,  -- only this payment (applied once); NULL: the next payments
    remaining INTEGER,  -- how many more payments it applies to; NULL: all of them
    failure_reason INTEGER,
    seconds REAL
);
"""


class InvoiceError(Exception):
    """A request the node refuses, with the gRPC status LND answers it with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)


class Watchers:
    """The queues that follow one payment hash each (SubscribeSingleInvoice,
    TrackPaymentV2). Used under the owning store's lock."""

    def __init__(self):
        self._by_hash: dict[bytes, set[queue.Queue]] = {}

    def add(self, r_hash: bytes, events: queue.Queue) -> None:
        self._by_hash.setdefault(r_hash, set()).add(events)

    def discard(self, events: queue.Queue) -> None:
        for r_hash, watchers in list(self._by_hash.items()):
            watchers.discard(events)
            if not watchers:
                del self._by_hash[r_hash]

    def publish(self, r_hash: bytes, row) -> None:
        for events in self._by_hash.get(r_hash, ()):
            events.put(row)

    def all(self) -> set[queue.Queue]:
        return set().union(*self._by_hash.values())


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
        self._watchers = Watchers()  # SubscribeSingleInvoice

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
            self._watchers.add(r_hash, events)
        return row, events

    def unsubscribe(self, events: queue.Queue) -> None:
        with self._lock:
            self._streams.discard(events)
            self._watchers.discard(events)

    def close(self) -> None:
        with self._lock:
            for events in self._streams | self._watchers.all():
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
        self._watchers.publish(row["r_hash"], row)
        if added_or_settled:
            for events in self._streams:
                events.put(row)


class PaymentStore:
    """The node's outgoing payments, the remote payee's invoices and the control rules, in
    the node's SQLite, and the fan-out of payment changes to open streams and to the
    threads that drive payments. One lock, as in InvoiceStore."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(PAYMENT_SCHEMA)
        self._watchers = Watchers()  # TrackPaymentV2

    def begin(
        self, r_hash: bytes, payment_request: str, value_msat: int, fee_limit_msat: int
    ) -> sqlite3.Row:
        """Take a payment, as LND's SendPaymentV2 does before anything is sent; the first
        control rule that matches it decides what becomes of it."""
        with self._lock:
            row = self._get(r_hash)
            if row is not None and row["status"] == IN_FLIGHT:
                raise InvoiceError(Code.ALREADY_EXISTS, "payment is in transition")
            if row is not None and row["status"] == SUCCEEDED:
                raise InvoiceError(Code.ALREADY_EXISTS, "invoice is already paid")
            fields = {
                "payment_hash": r_hash,
                "payment_request": payment_request,
                "value_msat": value_msat,
                "fee_limit_msat": fee_limit_msat,
                "creation_time_ns": time.time_ns(),
                "status": IN_FLIGHT,
            }
            with self._db:
                fields |= self._take_rule(r_hash)
                if row is None:
                    names = ", ".join(fields)
                    self._db.execute(
                        f"INSERT INTO payments ({names}) VALUES "
                        f"({', '.join(':' + name for name in fields)})",
                        fields,
                    )
                else:  # after a FAILED attempt LND lets the same hash be paid again
                    self._db.execute(
                        "UPDATE payments SET attempt = attempt + 1, payment_request ="
                        " :payment_request, value_msat = :value_msat, fee_msat = 0,"
                        " fee_limit_msat = :fee_limit_msat, status = :status,"
                        " failure_reason = 0, preimage = NULL,"
                        " creation_time_ns = :creation_time_ns, held = :held,"
                        " release_at = :release_at, forced_failure = :forced_failure,"
                        " delivered = 0 WHERE payment_hash = :payment_hash",
                        {"held": 0, "release_at": None, "forced_failure": None} | fields,
                    )
            return self._changed(r_hash)

    def _take_rule(self, r_hash: bytes) -> dict:
        """The effect of the first matching rule (one for this hash first), used up."""
        rule = (
            self._db.execute(
                "SELECT * FROM payment_rules WHERE payment_hash = ? ORDER BY id LIMIT 1", (r_hash,)
            ).fetchone()
            or self._db.execute(
                "SELECT * FROM payment_rules WHERE payment_hash IS NULL ORDER BY id LIMIT 1"
            ).fetchone()
        )
        if rule is None:
            return {}
        if rule["payment_hash"] is not None or rule["remaining"] == 1:
            self._db.execute("DELETE FROM payment_rules WHERE id = ?", (rule["id"],))
        elif rule["remaining"] is not None:
            self._db.execute(
                "UPDATE payment_rules SET remaining = remaining - 1 WHERE id = ?", (rule["id"],)
            )
        if rule["action"] == "fail":
            return {"forced_failure": rule["failure_reason"]}
        if rule["action"] == "hold":
            return {"held": 1}
        return {"release_at": time.time() + rule["seconds"]}

    def get(self, r_hash: bytes) -> sqlite3.Row | None:
        with self._lock:
            return self._get(r_hash)

    def in_flight(self) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(
                "SELECT * FROM payments WHERE status = ? ORDER BY payment_index", (IN_FLIGHT,)
            ).fetchall()

    def finish(self, r_hash: bytes, attempt: int, status: int, **fields) -> None:
        """The end of an attempt still in flight (a no-op once it has ended)."""
        assignments = "".join(f", {name} = :{name}" for name in fields)
        with self._lock:
            with self._db:
                changed = self._db.execute(
                    f"UPDATE payments SET status = :status, held = 0, release_at = NULL"
                    f"{assignments} WHERE payment_hash = :payment_hash AND attempt = :attempt"
                    f" AND status = :in_flight",
                    {
                        **fields,
                        "status": status,
                        "payment_hash": r_hash,
                        "attempt": attempt,
                        "in_flight": IN_FLIGHT,
                    },
                ).rowcount
            if changed:
                self._changed(r_hash)

    def start_route(self, r_hash: bytes, attempt: int) -> bool:
        """The rules are done with this attempt (no release from now on); False when it
        is no longer in flight (a release failed it first)."""
        with self._lock, self._db:
            return bool(
                self._db.execute(
                    "UPDATE payments SET held = 0, release_at = NULL WHERE payment_hash = ?"
                    " AND attempt = ? AND status = ?",
                    (r_hash, attempt, IN_FLIGHT),
                ).rowcount
            )

    def mark_delivered(self, r_hash: bytes, attempt: int) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE payments SET delivered = 1 WHERE payment_hash = ? AND attempt = ?",
                (r_hash, attempt),
            )

    def release(self, r_hash: bytes, failure_reason: int | None) -> sqlite3.Row:
        """End a hold or a delay: the payment goes on to its payee, or, given a failure
        reason, fails with it."""
        with self._lock:
            row = self._get(r_hash)
            if row is None:
                raise InvoiceError(Code.NOT_FOUND, "payment isn't initiated")
            if row["status"] != IN_FLIGHT:
                status = ln.Payment.PaymentStatus.Name(row["status"])
                raise InvoiceError(Code.FAILED_PRECONDITION, f"payment already {status}")
            if not row["held"] and row["release_at"] is None:
                raise InvoiceError(
                    Code.FAILED_PRECONDITION, "payment is not held or delayed by a rule"
                )
            with self._db:
                if failure_reason is None:
                    self._db.execute(
                        "UPDATE payments SET held = 0, release_at = NULL WHERE payment_hash = ?",
                        (r_hash,),
                    )
                else:
                    self._db.execute(
                        "UPDATE payments SET held = 0, release_at = NULL, status = ?,"
                        " failure_reason = ? WHERE payment_hash = ?",
                        (FAILED, failure_reason, r_hash),
                    )
            return self._changed(r_hash)

    def pay_remote(self, r_hash: bytes, attempt: int) -> None:
        """Route a payment to the remote payee: fails with NO_ROUTE when the route costs
        more than its fee limit, with INCORRECT_PAYMENT_DETAILS when the payee refuses it
        (unknown, expired or paid invoice, amount too low); else the payee settles it and
        both rows change in one transaction."""
        with self._lock:
            row = self._get(r_hash)
            if row is None or row["attempt"] != attempt or row["status"] != IN_FLIGHT:
                return
            invoice = self._db.execute(
                "SELECT * FROM remote_invoices WHERE payment_hash = ?", (r_hash,)
            ).fetchone()
            fee_msat = route_fee_msat(row["value_msat"])
            outcome = {"status": SUCCEEDED, "fee_msat": fee_msat}
            if fee_msat > row["fee_limit_msat"]:
                outcome = {"status": FAILED, "failure_reason": NO_ROUTE}
            elif (
                invoice is None
                or invoice["state"] != "OPEN"
                or invoice["creation_date"] + invoice["expiry"] <= time.time()
                or row["value_msat"] < invoice["value_msat"]
            ):
                outcome = {"status": FAILED, "failure_reason": INCORRECT_PAYMENT_DETAILS}
            else:
                outcome["preimage"] = invoice["preimage"]
            with self._db:
                if outcome["status"] == SUCCEEDED:
                    self._db.execute(
                        "UPDATE remote_invoices SET state = 'PAID', amt_paid_msat = ?"
                        " WHERE payment_hash = ?",
                        (row["value_msat"], r_hash),
                    )
                assignments = ", ".join(f"{name} = :{name}" for name in outcome)
                self._db.execute(
                    f"UPDATE payments SET {assignments}, held = 0, release_at = NULL"
                    " WHERE payment_hash = :payment_hash",
                    {**outcome, "payment_hash": r_hash},
                )
            self._changed(r_hash)

    def add_remote_invoice(self, fields: dict) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO remote_invoices (payment_hash, preimage, value_msat, memo,"
                " payment_request, creation_date, expiry) VALUES (:payment_hash, :preimage,"
                " :value_msat, :memo, :payment_request, :creation_date, :expiry)",
                fields,
            )

    def add_rule(self, fields: dict) -> sqlite3.Row:
        with self._lock:
            with self._db:
                cursor = self._db.execute(
                    "INSERT INTO payment_rules (action, payment_hash, remaining,"
                    " failure_reason, seconds) VALUES (:action, :payment_hash, :remaining,"
                    " :failure_reason, :seconds)",
                    fields,
                )
            return self._db.execute(
                "SELECT * FROM payment_rules WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()

    def rules(self) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute("SELECT * FROM payment_rules ORDER BY id").fetchall()

    def clear_rules(self) -> int:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM payment_rules").rowcount

    def watch(self, r_hash: bytes) -> tuple[sqlite3.Row | None, queue.Queue]:
        """The payment's current row (None if the node never took it) and its changes."""
        events: queue.Queue = queue.Queue()
        with self._lock:
            row = self._get(r_hash)
            self._watchers.add(r_hash, events)
        return row, events

    def unsubscribe(self, events: queue.Queue) -> None:
        with self._lock:
            self._watchers.discard(events)

    def close(self) -> None:
        with self._lock:
            for events in self._watchers.all():
                events.put(None)
            self._db.close()

    def _get(self, r_hash: bytes) -> sqlite3.Row | None:
        return self._db.execute(
            "SELECT * FROM payments WHERE payment_hash = ?", (r_hash,)
        ).fetchone()

    def _changed(self, r_hash: bytes) -> sqlite3.Row:
        row = self._get(r_hash)
        self._watchers.publish(r_hash, row)
        return row


def route_fee_msat(amount_msat: int) -> int:
    """What the pretend route to the remote payee charges."""
    return ROUTE_BASE_FEE_MSAT + -(-amount_msat * ROUTE_FEE_PPM // 1_000_000)


def failure_reason_code(name: str) -> int:
    """`NO_ROUTE` or `FAILURE_REASON_NO_ROUTE` (any case) as lnrpc's enum value."""
    full = name.strip().upper()
    if not full.startswith("FAILURE_REASON_"):
        full = "FAILURE_REASON_" + full
    if full not in ln.PaymentFailureReason.keys() or full == "FAILURE_REASON_NONE":
        choices = ", ".join(
            key.removeprefix("FAILURE_REASON_")
            for key in ln.PaymentFailureReason.keys()
            if key != "FAILURE_REASON_NONE"
        )
        raise InvoiceError(
            Code.INVALID_ARGUMENT, f"unknown failure reason {name!r}: one of {choices}"
        )
    return ln.PaymentFailureReason.Value(full)


def payment_json(row: sqlite3.Row) -> dict:
    succeeded = row["status"] == SUCCEEDED
    return {
        "payment_hash": row["payment_hash"].hex(),
        "status": ln.Payment.PaymentStatus.Name(row["status"]),
        "amount_msat": row["value_msat"],
        "fee_msat": row["fee_msat"] if succeeded else 0,
        "fee_limit_msat": row["fee_limit_msat"],
        "preimage": row["preimage"].hex() if succeeded else None,
        "failure_reason": ln.PaymentFailureReason.Name(row["failure_reason"]),
        "held": bool(row["held"]),
        "release_at": row["release_at"],
        "payment_request": row["payment_request"],
    }


def rule_json(row: sqlite3.Row) -> dict:
    reason = row["failure_reason"]
    return {
        "id": row["id"],
        "action": row["action"],
        "payment_hash": row["payment_hash"].hex() if row["payment_hash"] else None,
        "remaining": row["remaining"],  # null: every payment (or the one payment_hash)
        "reason": ln.PaymentFailureReason.Name(reason) if reason is not None else None,
        "seconds": row["seconds"],
    }


def payment_message(row: sqlite3.Row) -> ln.Payment:
    value, succeeded = row["value_msat"], row["status"] == SUCCEEDED
    fee = row["fee_msat"] if succeeded else 0
    return ln.Payment(
        payment_hash=row["payment_hash"].hex(),
        value=value // 1000,
        value_sat=value // 1000,
        value_msat=value,
        payment_request=row["payment_request"],
        status=row["status"],
        fee=fee // 1000,
        fee_sat=fee // 1000,
        fee_msat=fee,
        payment_preimage=row["preimage"].hex() if succeeded else "",
        creation_date=row["creation_time_ns"] // 1_000_000_000,
        creation_time_ns=row["creation_time_ns"],
        payment_index=row["payment_index"],
        failure_reason=row["failure_reason"],
    )


def _payment_updates(
    store: PaymentStore, row: sqlite3.Row, events: queue.Queue, context, final_only: bool
) -> Iterator[ln.Payment]:
    """A payment's current state, then each change of status until it is final or the call
    ends (`final_only`: LND's no_inflight_updates). The call never moves the payment."""
    try:
        if not context.add_callback(lambda: events.put(None)):
            return  # the call ended already
        last = None
        while True:
            final = row["status"] != IN_FLIGHT
            if row["status"] != last and (final or not final_only):
                last = row["status"]
                yield payment_message(row)
            if final:
                return
            row = events.get()
            if row is None:
                return
    finally:
        store.unsubscribe(events)


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


def _description_hash(request) -> str:
    """LND's rule: a description hash of 32 bytes, and then no memo."""
    if not request.description_hash:
        return ""
    if request.memo:
        raise InvoiceError(
            Code.INVALID_ARGUMENT, "cannot have both description and description hash"
        )
    return _hash32(request.description_hash, "description hash").hex()


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
            _description_hash(request),
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
            _description_hash(request),
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
    """LND's router: a payment is taken, then proceeds in a thread of the node's own, so
    the call only watches it; cancelling the call or killing the client changes nothing."""

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
        if request.fee_limit_sat and request.fee_limit_msat:
            context.abort(Code.INVALID_ARGUMENT, "sat and msat fee limits are mutually exclusive")
        # As in LND's router, no fee limit means zero-fee routes only.
        fee_limit_msat = request.fee_limit_msat or request.fee_limit_sat * 1000
        if fee_limit_msat < 0:
            context.abort(Code.INVALID_ARGUMENT, "fee limit cannot be negative")
        try:
            row, events = self.node.send_payment(
                bytes.fromhex(decoded.payment_hash),
                request.payment_request,
                amount_msat,
                fee_limit_msat,
            )
        except InvoiceError as exc:
            context.abort(exc.code, exc.message)
        yield from _payment_updates(
            self.node.payments, row, events, context, request.no_inflight_updates
        )

    def TrackPaymentV2(self, request, context):
        if len(request.payment_hash) != 32:
            context.abort(Code.INVALID_ARGUMENT, "payment hash must be exactly 32 bytes")
        row, events = self.node.payments.watch(request.payment_hash)
        if row is None:
            self.node.payments.unsubscribe(events)
            context.abort(Code.NOT_FOUND, "payment isn't initiated")
        yield from _payment_updates(
            self.node.payments, row, events, context, request.no_inflight_updates
        )


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
    """The node's loopback control, standing in for the rest of the network (JSON in, JSON
    out; errors are {"error": ...} with 400, 404 or 409):

    POST /pay {"bolt11"}                  a remote wallet pays one of the node's invoices
    POST /mine {"blocks"}                 the chain advances (-> {"blockHeight"})
    POST /invoices {"amount_msat", "memo"?, "expiry"?}   a remote payee's invoice
                                          -> {"bolt11", "payment_hash", ...}, no preimage
    GET /payments/<hash>                  an outgoing payment as this node sees it
    POST /payments/<hash>/release {"outcome": "succeed"|"fail", "reason"?}
    GET | POST | DELETE /payments/rules   list, add ({"action": "fail"|"hold"|"delay",
                                          "payment_hash"? | "count"? | "all"?, "reason"?,
                                          "seconds"?}) or clear the payment rules
    """

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        if (method, self.path) == ("POST", "/mine"):
            self._mine()
            return
        node: SimNode = self.server.node
        path = self.path
        release = re.fullmatch(r"/payments/([0-9a-fA-F]{64})/release", path)
        payment = re.fullmatch(r"/payments/([^/]+)", path)
        try:
            if (method, path) == ("POST", "/pay"):
                try:
                    bolt11 = self._body().get("bolt11")
                except InvoiceError:
                    bolt11 = None
                if not isinstance(bolt11, str):
                    raise InvoiceError(
                        Code.INVALID_ARGUMENT, 'expected a JSON body {"bolt11": "<invoice>"}'
                    )
                answer = node.pay(bolt11)
            elif (method, path) == ("POST", "/invoices"):
                body = self._body()
                answer = node.create_remote_invoice(
                    body.get("amount_msat"),
                    body.get("memo", ""),
                    body.get("expiry", REMOTE_EXPIRY_SECONDS),
                )
            elif path == "/payments/rules" and method == "GET":
                answer = {"rules": node.payment_rules()}
            elif path == "/payments/rules" and method == "DELETE":
                answer = {"deleted": node.clear_payment_rules()}
            elif path == "/payments/rules" and method == "POST":
                body = self._body()
                if body.get("all") is True and "count" in body:
                    raise InvoiceError(Code.INVALID_ARGUMENT, "give count or all, not both")
                answer = node.add_payment_rule(
                    body.get("action"),
                    payment_hash=body.get("payment_hash"),
                    count=None if body.get("all") is True else body.get("count", 1),
                    reason=_string(body, "reason", "NO_ROUTE"),
                    seconds=body.get("seconds"),
                )
            elif release and method == "POST":
                body = self._body()
                outcome = body.get("outcome")
                if outcome not in ("succeed", "fail"):
                    raise InvoiceError(Code.INVALID_ARGUMENT, 'outcome must be "succeed" or "fail"')
                answer = node.release_payment(
                    release.group(1),
                    succeed=outcome == "succeed",
                    reason=_string(body, "reason", "NO_ROUTE"),
                )
            elif payment and payment.group(1) != "rules" and method == "GET":
                answer = node.payment(payment.group(1))
            else:
                self._answer(404, {"error": f"no {method} {path} here (see ControlHandler)"})
                return
        except InvoiceError as exc:
            self._answer(exc.http_status, {"error": exc.message})
            return
        self._answer(200, answer)

    def _body(self) -> dict:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        except ValueError:
            raise InvoiceError(Code.INVALID_ARGUMENT, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise InvoiceError(Code.INVALID_ARGUMENT, "the body must be a JSON object")
        return body

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
        self.payments: PaymentStore | None = None
        self._stopping = threading.Event()
        self._drivers: set[threading.Thread] = set()
        self._drivers_lock = threading.Lock()
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
        self._remote_key = invoice_codec.load_or_create_key(self.directory / "remote.key")
        self.remote_pubkey = invoice_codec.node_pubkey(self._remote_key)
        self.store = InvoiceStore(self.directory / "invoices.sqlite3")
        self.payments = PaymentStore(self.directory / "invoices.sqlite3")
        self._stopping.clear()
        for row in self.payments.in_flight():  # held, delayed or unfinished when it stopped
            self._start_driver(row["payment_hash"], row["attempt"])

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
        with self._drivers_lock:
            self._stopping.set()  # payments in flight stay so, in the database
            drivers = list(self._drivers)
        for driver in drivers:
            driver.join()
        self.payments.close()  # wakes the streams still waiting for an event
        self.store.close()
        self._executor.shutdown(wait=True)
        (self.directory / "control.port").unlink(missing_ok=True)
        self._grpc = self._executor = self._control = self.store = self.payments = None

    def add_invoice(
        self,
        r_hash: bytes,
        preimage: bytes | None,
        value_msat: int,
        memo: str,
        expiry: int,
        description_hash: str = "",
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
            description_hash=description_hash,
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

    # Outgoing payments.

    def send_payment(
        self, r_hash: bytes, payment_request: str, amount_msat: int, fee_limit_msat: int
    ) -> tuple[sqlite3.Row, queue.Queue]:
        """Take a payment and set it going; returns its row and a queue of its changes
        (for the caller to unsubscribe). Raises InvoiceError (ALREADY_EXISTS)."""
        row = self.payments.begin(r_hash, payment_request, amount_msat, fee_limit_msat)
        row, events = self.payments.watch(r_hash)
        self._start_driver(r_hash, row["attempt"])
        return row, events

    def _start_driver(self, r_hash: bytes, attempt: int) -> None:
        with self._drivers_lock:
            if self._stopping.is_set():
                return  # still in flight in the database: the next start resumes it
            driver = threading.Thread(
                target=self._drive,
                args=(r_hash, attempt),
                name=f"simnode-payment-{r_hash.hex()[:8]}",
                daemon=True,
            )
            self._drivers.add(driver)
            driver.start()

    def _drive(self, r_hash: bytes, attempt: int) -> None:
        """One payment attempt, from taken to final: the rules first, then the route."""
        payments = self.payments
        _, events = payments.watch(r_hash)  # a release wakes it at once
        try:
            while not self._stopping.is_set():
                row = payments.get(r_hash)
                if row["attempt"] != attempt or row["status"] != IN_FLIGHT:
                    return
                if row["forced_failure"] is not None:
                    payments.finish(r_hash, attempt, FAILED, failure_reason=row["forced_failure"])
                    return
                if row["held"] or (row["release_at"] or 0) > time.time():
                    wait = POLL_SECONDS
                    if not row["held"]:
                        wait = min(wait, row["release_at"] - time.time())
                    try:
                        events.get(timeout=max(wait, 0.001))
                    except queue.Empty:
                        pass
                    continue
                if payments.start_route(r_hash, attempt):
                    self._route(row)
                return
        finally:
            payments.unsubscribe(events)
            with self._drivers_lock:
                self._drivers.discard(threading.current_thread())

    def _route(self, row: sqlite3.Row) -> None:
        r_hash, attempt = row["payment_hash"], row["attempt"]
        payee = invoice_codec.decode_invoice(row["payment_request"]).payee
        if payee == self.pubkey:
            self._pay_own_invoice(row)
        elif payee == self.remote_pubkey:
            self.payments.pay_remote(r_hash, attempt)
        else:
            self.payments.finish(r_hash, attempt, FAILED, failure_reason=NO_ROUTE)

    def _pay_own_invoice(self, row: sqlite3.Row) -> None:
        """As over a channel to ourselves: no fee; a hold invoice keeps the payment in
        flight until its owner settles or cancels it."""
        r_hash, attempt = row["payment_hash"], row["attempt"]
        if not row["delivered"]:
            try:
                self.store.pay(r_hash, row["value_msat"])
            except InvoiceError:  # unknown, paid, canceled or expired; amount too low
                self.payments.finish(
                    r_hash, attempt, FAILED, failure_reason=INCORRECT_PAYMENT_DETAILS
                )
                return
            self.payments.mark_delivered(r_hash, attempt)
        invoice, events = self.store.watch(r_hash)
        try:
            while invoice is not None and invoice["state"] not in FINAL_STATES:
                if self._stopping.is_set():
                    return
                try:
                    invoice = events.get(timeout=POLL_SECONDS) or invoice
                except queue.Empty:
                    pass
        finally:
            self.store.unsubscribe(events)
        if invoice is not None and invoice["state"] == SETTLED:
            self.payments.finish(r_hash, attempt, SUCCEEDED, preimage=invoice["r_preimage"])
        else:
            self.payments.finish(r_hash, attempt, FAILED, failure_reason=INCORRECT_PAYMENT_DETAILS)

    # Test controls (also on the HTTP control server and `manage.py simnode_control`).

    def create_remote_invoice(
        self, amount_msat: int, memo: str = "", expiry: int = REMOTE_EXPIRY_SECONDS
    ) -> dict:
        """An invoice of the pretend remote payee, which this node can pay over its
        pretend route. The preimage stays with the payee: the payer learns it by paying."""
        if not isinstance(amount_msat, int) or isinstance(amount_msat, bool) or amount_msat < 1:
            raise InvoiceError(Code.INVALID_ARGUMENT, "amount_msat must be a positive integer")
        if not isinstance(expiry, int) or isinstance(expiry, bool) or expiry < 1:
            raise InvoiceError(Code.INVALID_ARGUMENT, "expiry must be a positive integer")
        if not isinstance(memo, str):
            raise InvoiceError(Code.INVALID_ARGUMENT, "memo must be a string")
        preimage = secrets.token_bytes(32)
        r_hash = hashlib.sha256(preimage).digest()
        created = int(time.time())
        bolt11 = invoice_codec.encode_invoice(
            self._remote_key,
            network=NETWORK,
            payment_hash=r_hash.hex(),
            payment_addr=secrets.token_hex(32),
            amount_msat=amount_msat,
            memo=memo,
            created_at=created,
            expiry_seconds=expiry,
        )
        self.payments.add_remote_invoice(
            {
                "payment_hash": r_hash,
                "preimage": preimage,
                "value_msat": amount_msat,
                "memo": memo,
                "payment_request": bolt11,
                "creation_date": created,
                "expiry": expiry,
            }
        )
        return {
            "bolt11": bolt11,
            "payment_hash": r_hash.hex(),
            "amount_msat": amount_msat,
            "expires_at": created + expiry,
            "payee": self.remote_pubkey,
        }

    def add_payment_rule(
        self,
        action: str,
        *,
        payment_hash: str | None = None,
        count: int | None = 1,
        reason: str = "NO_ROUTE",
        seconds: float | None = None,
    ) -> dict:
        """What happens to the next payments this node takes: `fail` (with `reason`),
        `hold` (in flight until `release_payment`) or `delay` (routed after `seconds`).
        It applies to the payment of `payment_hash` (once), else to the next `count`
        payments (None: all of them, until the rules are cleared). The oldest rule that
        matches wins; one for the payment's own hash before any other."""
        if action not in RULE_ACTIONS:
            raise InvoiceError(
                Code.INVALID_ARGUMENT, f"action must be one of {', '.join(RULE_ACTIONS)}"
            )
        r_hash = None
        if payment_hash is not None:
            r_hash, count = _payment_hash(payment_hash), None
        elif count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or count < 1
        ):
            raise InvoiceError(Code.INVALID_ARGUMENT, "count must be a positive integer")
        failure_reason = failure_reason_code(reason) if action == "fail" else None
        if action == "delay":
            if (
                not isinstance(seconds, int | float)
                or isinstance(seconds, bool)
                or not 0 < seconds < 86400
            ):
                raise InvoiceError(Code.INVALID_ARGUMENT, "a delay needs seconds: a number above 0")
        else:
            seconds = None
        row = self.payments.add_rule(
            {
                "action": action,
                "payment_hash": r_hash,
                "remaining": count,
                "failure_reason": failure_reason,
                "seconds": seconds,
            }
        )
        return rule_json(row)

    def payment_rules(self) -> list[dict]:
        return [rule_json(row) for row in self.payments.rules()]

    def clear_payment_rules(self) -> int:
        return self.payments.clear_rules()

    def payment(self, payment_hash: str) -> dict:
        """The payment as this node (the payer) sees it; raises InvoiceError NOT_FOUND."""
        row = self.payments.get(_payment_hash(payment_hash))
        if row is None:
            raise InvoiceError(Code.NOT_FOUND, "payment isn't initiated")
        return payment_json(row)

    def release_payment(
        self, payment_hash: str, succeed: bool = True, reason: str = "NO_ROUTE"
    ) -> dict:
        """End a hold or a delay now: the payment goes on to its payee (which settles it,
        if it can be paid), or fails with `reason`. Returns the payment: final, unless it
        goes on to wait for a hold invoice of this node or to take long."""
        failure_reason = None if succeed else failure_reason_code(reason)
        r_hash = _payment_hash(payment_hash)
        _, events = self.payments.watch(r_hash)
        try:
            row = self.payments.release(r_hash, failure_reason)
            deadline = time.monotonic() + RELEASE_ANSWER_WAIT_SECONDS
            while row["status"] == IN_FLIGHT and (left := deadline - time.monotonic()) > 0:
                try:
                    row = events.get(timeout=left) or row
                except queue.Empty:
                    break
        finally:
            self.payments.unsubscribe(events)
        return payment_json(row)


def _payment_hash(value) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise InvoiceError(Code.INVALID_ARGUMENT, "a payment hash is 64 hex digits")
    return bytes.fromhex(value)


def _string(body: dict, name: str, default: str) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise InvoiceError(Code.INVALID_ARGUMENT, f"{name} must be a string")
    return value


def control_pay(directory: Path, bolt11: str, timeout: float = 10.0) -> tuple[int, dict]:
    """Pay through the control endpoint of the sim node running in `directory`, which may
    be another process. Returns the HTTP status and the JSON answer."""
    return control_request(directory, "POST", "/pay", {"bolt11": bolt11}, timeout)


def control_request(
    directory: Path, method: str, path: str, body: dict | None = None, timeout: float = 10.0
) -> tuple[int, dict]:
    """One request to the control server of the sim node running in `directory` (maybe in
    another process): the HTTP status and the JSON answer. Raises FileNotFoundError when
    no node runs there, OSError when it cannot be reached."""
    port = int((Path(directory) / "control.port").read_text())
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
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
            f"Remote payee invoices, payment rules: manage.py simnode_control --dir"
            f" {node.directory} --help\n"
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
