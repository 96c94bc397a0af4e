"""The lnd backend against the simulated LND, over real gRPC with TLS and a macaroon.

Each test starts its own sim node (in-process, port 0) in a temporary directory, so the
settle and add indexes below start from 1.
"""

import hashlib
import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from coincurve import PrivateKey
from lndgrpc.compiled import invoices_pb2, invoices_pb2_grpc, lightning_pb2_grpc
from lndgrpc.compiled import lightning_pb2 as ln
from pyln.proto.invoice import Invoice

from lightning import invoice_codec
from lightning.backends.base import (
    InvoiceNotFound,
    NodeAuthError,
    NodeError,
    NodeTLSError,
    NodeUnavailable,
    PaymentFailed,
)
from lightning.backends.lnd import LndBackend
from lightning.simnode import SimNode, control_pay, ensure_tls_files

BASE_DIR = Path(__file__).resolve().parent.parent
WAIT = 5.0  # seconds anything that should happen now may take before a test fails


@pytest.fixture
def node(tmp_path):
    sim = SimNode(tmp_path / "lnd").start()
    yield sim
    sim.stop()


def connect(node: SimNode, **overrides) -> LndBackend:
    arguments = {
        "host": node.address,
        "tls_cert": str(node.cert_path),
        "macaroon": str(node.macaroon_path),
        "timeout_seconds": WAIT,
    }
    return LndBackend(**(arguments | overrides))


@pytest.fixture
def lnd(node):
    backend = connect(node)
    yield backend
    backend.close()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def paid(node: SimNode, bolt11: str) -> dict:
    """Pay through the control endpoint, as a remote wallet would; the payment must go in."""
    status, answer = control_pay(node.directory, bolt11)
    assert status == 200, answer
    return answer


def collect(subscription, count: int) -> list:
    """The next `count` settlements; fails naming what came if they do not come in time."""
    received = []
    deadline = time.monotonic() + WAIT
    while len(received) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(
                f"expected {count} settlements within {WAIT}s, got settle indexes "
                f"{[s.settle_index for s in received]}"
            )
        received += subscription.next_batch(timeout=remaining)
    return received


def raw_channel(node: SimNode, macaroon: bytes | None) -> grpc.Channel:
    """A plain gRPC client, to check what the sim node itself puts on the wire."""
    credentials = grpc.ssl_channel_credentials(node.cert_path.read_bytes())
    if macaroon is not None:
        metadata = (("macaroon", macaroon.hex()),)
        credentials = grpc.composite_channel_credentials(
            credentials,
            grpc.metadata_call_credentials(lambda context, callback: callback(metadata, None)),
        )
    return grpc.secure_channel(node.address, credentials)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_get_info_identifies_the_node(node, lnd):
    info = lnd.get_info()
    assert (info.backend, info.pubkey, info.network) == ("lnd", node.pubkey, "regtest")
    assert info.alias
    lnd.close()
    assert lnd.get_info() == info, "a closed backend reconnects on its next call"


def test_created_invoice_is_a_bolt11_signed_by_the_node(lnd):
    invoice = lnd.create_invoice(amount_msat=150_000, memo="two coffees", expiry_seconds=900)

    decoded = Invoice.decode(invoice.bolt11)
    assert decoded.currency == "bcrt"
    assert decoded.amount * 10**11 == 150_000  # pyln gives bitcoin
    assert decoded.paymenthash.hex() == invoice.payment_hash
    assert ("d", "two coffees") in decoded.tags
    assert ("x", 900) in decoded.tags
    assert decoded.pubkey.format(compressed=True).hex() == lnd.get_info().pubkey
    assert invoice.state == "OPEN"
    assert (invoice.amount_msat, invoice.memo, invoice.hold) == (150_000, "two coffees", False)
    assert invoice.created_at.utcoffset().total_seconds() == 0
    assert invoice.created_at.timestamp() == decoded.date
    assert (invoice.expires_at - invoice.created_at).total_seconds() == 900
    assert invoice.add_index == 1
    # As LND's LookupInvoice: the node keeps a regular invoice's preimage from the start
    # (an internal payment needs it); the gateway's Invoice shows it only once paid.
    assert sha256_hex(bytes.fromhex(invoice.preimage)) == invoice.payment_hash


def test_an_invoice_can_carry_a_description_hash_instead_of_a_memo(lnd):
    description_hash = sha256_hex(b'[["text/plain", "pay alice"]]')
    for invoice in (
        lnd.create_invoice(1000, "", 600, description_hash=description_hash),
        lnd.create_hold_invoice(sha256_hex(b"x"), 1000, "", 600, description_hash),
    ):
        decoded = invoice_codec.decode_invoice(invoice.bolt11)
        assert decoded.description_hash == description_hash and not decoded.description
    # LND refuses a memo with a description hash: the hash wins, the memo stays out.
    with_memo = lnd.create_invoice(1000, "a memo", 600, description_hash=description_hash)
    assert invoice_codec.decode_invoice(with_memo.bolt11).description is None


def test_lookup_follows_an_invoice_from_open_to_settled(node, lnd):
    invoice = lnd.create_invoice(42_000, "sticker", 600)
    assert lnd.lookup_invoice(invoice.payment_hash).state == "OPEN"

    answer = paid(node, invoice.bolt11)

    settled = lnd.lookup_invoice(invoice.payment_hash)
    assert settled.state == "SETTLED"
    assert sha256_hex(bytes.fromhex(settled.preimage)) == invoice.payment_hash
    assert answer == {
        "paymentHash": invoice.payment_hash,
        "preimage": settled.preimage,
        "state": "SETTLED",
    }
    assert (settled.settle_index, settled.amount_paid_msat) == (1, 42_000)
    assert settled.settled_at is not None and settled.settled_at >= settled.created_at


def test_lookup_of_an_unknown_invoice_raises_invoice_not_found(lnd):
    with pytest.raises(InvoiceNotFound, match="unable to locate invoice"):
        lnd.lookup_invoice(secrets.token_hex(32))


def test_settlements_are_replayed_after_the_index_then_streamed_live_in_order(node, lnd):
    invoices = [lnd.create_invoice(1_000 * (n + 1), f"order {n}", 600) for n in range(5)]
    for invoice in invoices[:3]:
        paid(node, invoice.bolt11)

    subscription = lnd.subscribe_settlements(1)
    try:
        replayed = collect(subscription, 2)
        assert [(s.settle_index, s.payment_hash) for s in replayed] == [
            (2, invoices[1].payment_hash),
            (3, invoices[2].payment_hash),
        ]

        hold = lnd.create_hold_invoice(sha256_hex(secrets.token_bytes(32)), 5_000, "held", 600)
        paid(node, hold.bolt11)
        lnd.cancel_hold_invoice(hold.payment_hash)
        paid(node, invoices[4].bolt11)
        paid(node, invoices[3].bolt11)

        live = collect(subscription, 2)
        assert [(s.settle_index, s.payment_hash, s.state) for s in live] == [
            (4, invoices[4].payment_hash, "SETTLED"),
            (5, invoices[3].payment_hash, "SETTLED"),
        ], "the canceled hold invoice must not appear, settlements come in settle order"
        assert all(sha256_hex(bytes.fromhex(s.preimage)) == s.payment_hash for s in live)
    finally:
        subscription.close()


def test_sim_invoice_stream_has_lnds_replay_rules_and_no_cancels(node, lnd):
    """SubscribeInvoices as LND sends it: a zero settle index replays no settlements, adds
    are replayed after add_index, and ACCEPTED and CANCELED are never streamed."""
    first = lnd.create_invoice(1_000, "settled before", 600)
    paid(node, first.bolt11)
    regular = lnd.create_invoice(2_000, "regular", 600)
    hold = lnd.create_hold_invoice(sha256_hex(secrets.token_bytes(32)), 3_000, "hold", 600)

    channel = raw_channel(node, node.macaroon_path.read_bytes())
    stream = lightning_pb2_grpc.LightningStub(channel).SubscribeInvoices(
        ln.InvoiceSubscription(add_index=first.add_index, settle_index=0), timeout=WAIT
    )
    try:
        backlog = [next(stream), next(stream)]
        assert [(i.r_hash.hex(), i.state) for i in backlog] == [
            (regular.payment_hash, ln.Invoice.OPEN),
            (hold.payment_hash, ln.Invoice.OPEN),
        ]
        paid(node, hold.bolt11)  # ACCEPTED
        lnd.cancel_hold_invoice(hold.payment_hash)
        paid(node, regular.bolt11)

        event = next(stream)
        assert (event.r_hash.hex(), event.state, event.settle_index) == (
            regular.payment_hash,
            ln.Invoice.SETTLED,
            2,
        )
        assert event.settled and event.amt_paid_sat == 2 and event.amt_paid_msat == 2_000
        assert sha256_hex(event.r_preimage) == regular.payment_hash
    finally:
        stream.cancel()
        channel.close()


def test_hold_invoice_is_accepted_by_the_payer_then_settled_with_our_preimage(node, lnd):
    paid(node, lnd.create_invoice(1_000, "earlier", 600).bolt11)  # settle index 1
    preimage = secrets.token_bytes(32)
    payment_hash = sha256_hex(preimage)

    invoice = lnd.create_hold_invoice(payment_hash, 50_000, "held order", 600)
    assert (invoice.payment_hash, invoice.state, invoice.hold) == (payment_hash, "OPEN", True)
    assert Invoice.decode(invoice.bolt11).paymenthash.hex() == payment_hash

    updates = lnd.subscribe_single(payment_hash, timeout=WAIT)
    settlements = lnd.subscribe_settlements(1)
    try:
        assert next(updates).state == "OPEN"
        answer = paid(node, invoice.bolt11)
        assert answer == {"paymentHash": payment_hash, "preimage": None, "state": "ACCEPTED"}

        accepted = next(updates)
        assert (accepted.state, accepted.amount_paid_msat) == ("ACCEPTED", 50_000)
        assert lnd.lookup_invoice(payment_hash).state == "ACCEPTED"

        lnd.settle_hold_invoice(preimage.hex())
        assert next(updates).state == "SETTLED"
        assert list(updates) == [], "the single-invoice stream ends at a final state"

        [settled] = collect(settlements, 1)
        assert (settled.payment_hash, settled.settle_index) == (payment_hash, 2)
        assert settled.preimage == preimage.hex()
    finally:
        updates.close()
        settlements.close()


def test_canceled_hold_invoice_is_canceled_and_never_streamed(node, lnd):
    paid(node, lnd.create_invoice(1_000, "earlier", 600).bolt11)  # settle index 1
    preimage = secrets.token_bytes(32)
    invoice = lnd.create_hold_invoice(sha256_hex(preimage), 8_000, "to cancel", 600)
    settlements = lnd.subscribe_settlements(1)
    try:
        paid(node, invoice.bolt11)
        lnd.cancel_hold_invoice(invoice.payment_hash)

        assert lnd.lookup_invoice(invoice.payment_hash).state == "CANCELED"
        with pytest.raises(PaymentFailed, match="already canceled"):
            lnd.settle_hold_invoice(preimage.hex())
        status, answer = control_pay(node.directory, invoice.bolt11)
        assert (status, answer) == (409, {"error": "invoice was canceled"})

        after = lnd.create_invoice(2_000, "after the cancel", 600)
        paid(node, after.bolt11)
        [first] = collect(settlements, 1)
        assert (first.payment_hash, first.settle_index) == (after.payment_hash, 2)
    finally:
        settlements.close()


def test_settling_an_unpaid_hold_invoice_is_refused(lnd):
    preimage = secrets.token_bytes(32)
    lnd.create_hold_invoice(sha256_hex(preimage), 1_000, "not paid yet", 600)
    with pytest.raises(PaymentFailed, match="invoice still open"):
        lnd.settle_hold_invoice(preimage.hex())
    with pytest.raises(InvoiceNotFound):
        lnd.cancel_hold_invoice(secrets.token_hex(32))


def test_expired_invoice_is_canceled_and_cannot_be_paid(node, lnd):
    invoice = lnd.create_invoice(1_000, "too late", expiry_seconds=1)
    states = [update.state for update in lnd.subscribe_single(invoice.payment_hash, timeout=WAIT)]
    # Creation times are whole seconds: on a busy machine the invoice may have expired
    # before the stream opened, which then starts at CANCELED.
    assert states in (["OPEN", "CANCELED"], ["CANCELED"])
    assert lnd.lookup_invoice(invoice.payment_hash).state == "CANCELED"
    status, answer = control_pay(node.directory, invoice.bolt11)
    assert (status, answer) == (409, {"error": "invoice has expired"})


def test_pay_invoice_pays_a_node_invoice_and_returns_the_preimage(lnd):
    invoice = lnd.create_invoice(21_000, "refund", 600)

    payment = lnd.pay_invoice(invoice.bolt11, timeout_seconds=WAIT)

    assert sha256_hex(bytes.fromhex(payment.preimage)) == invoice.payment_hash
    assert (payment.payment_hash, payment.amount_msat, payment.fee_msat) == (
        invoice.payment_hash,
        21_000,
        0,
    )
    assert lnd.lookup_invoice(invoice.payment_hash).state == "SETTLED"
    # LND keeps the succeeded payment and refuses a second one for its hash.
    with pytest.raises(PaymentFailed, match="invoice is already paid"):
        lnd.pay_invoice(invoice.bolt11, timeout_seconds=WAIT)


def test_paying_a_hold_invoice_stays_in_flight_until_its_owner_settles(lnd):
    preimage = secrets.token_bytes(32)
    invoice = lnd.create_hold_invoice(sha256_hex(preimage), 3_000, "held payout", 600)
    updates = lnd.subscribe_single(invoice.payment_hash, timeout=WAIT)
    with ThreadPoolExecutor(max_workers=1) as pool:
        payment = pool.submit(lnd.pay_invoice, invoice.bolt11, WAIT)
        assert [next(updates).state, next(updates).state] == ["OPEN", "ACCEPTED"]
        assert not payment.done(), "a held payment is not final before the hold is settled"
        lnd.settle_hold_invoice(preimage.hex())
        assert payment.result(timeout=WAIT).preimage == preimage.hex()
    updates.close()


def test_pay_invoice_fails_for_an_invoice_no_route_reaches(lnd):
    foreign = invoice_codec.encode_invoice(
        PrivateKey(),
        network="regtest",
        payment_hash=secrets.token_hex(32),
        payment_addr=secrets.token_hex(32),
        amount_msat=10_000,
        memo="someone else's",
        created_at=invoice_codec.now(),
        expiry_seconds=600,
    )
    with pytest.raises(PaymentFailed, match="no route to the destination"):
        lnd.pay_invoice(foreign, timeout_seconds=WAIT)
    with pytest.raises(PaymentFailed, match="not a valid BOLT11 invoice"):
        lnd.pay_invoice("lnbcrt1notaninvoice", timeout_seconds=WAIT)


def test_wrong_macaroon_is_an_auth_error(node):
    backend = connect(node, macaroon=secrets.token_hex(48))
    try:
        with pytest.raises(NodeAuthError, match="LND rejected the macaroon: verification failed"):
            backend.get_info()
    finally:
        backend.close()


def test_sim_refuses_a_call_without_macaroon_as_lnd_does(node):
    channel = raw_channel(node, macaroon=None)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            invoices_pb2_grpc.InvoicesStub(channel).CancelInvoice(
                invoices_pb2.CancelInvoiceMsg(payment_hash=bytes(32)), timeout=WAIT
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.details() == "expected 1 macaroon, got 0"
    finally:
        channel.close()


def test_unreachable_node_fails_fast(node):
    host = f"127.0.0.1:{free_port()}"
    backend = connect(node, host=host, timeout_seconds=10)
    started = time.monotonic()
    try:
        with pytest.raises(NodeUnavailable, match=f"cannot reach LND at {host}"):
            backend.get_info()
    finally:
        backend.close()
    assert time.monotonic() - started < 3, "a refused connection must not wait for the deadline"


def test_another_nodes_tls_cert_is_a_tls_error(node, tmp_path):
    other_cert, _ = ensure_tls_files(tmp_path)  # what a second sim node would present
    backend = connect(node, tls_cert=other_cert.decode())
    try:
        with pytest.raises(NodeTLSError, match="TLS handshake with LND at .* check LND_TLS_CERT"):
            backend.get_info()
    finally:
        backend.close()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tls_cert": ""}, "LND_TLS_CERT is not set"),
        ({"macaroon": " "}, "LND_MACAROON is not set"),
        ({"host": ""}, "LND_GRPC_HOST is not set"),
        ({"tls_cert": "/nonexistent/tls.cert"}, "LND_TLS_CERT: cannot read /nonexistent/tls.cert"),
        ({"macaroon": "/nonexistent/admin.macaroon"}, "LND_MACAROON: cannot read /nonexistent"),
    ],
)
def test_missing_credentials_are_reported_at_construction(node, overrides, message):
    with pytest.raises(NodeError, match=message):
        connect(node, **overrides)


def test_from_settings_takes_the_cert_as_pem_and_the_macaroon_as_hex(node, settings):
    settings.LND_GRPC_HOST = node.address
    settings.LND_TLS_CERT = node.cert_path.read_text()
    settings.LND_MACAROON = node.macaroon_path.read_bytes().hex()
    settings.LND_TIMEOUT_SECONDS = WAIT
    backend = LndBackend.from_settings()
    try:
        assert backend.get_info().pubkey == node.pubkey
    finally:
        backend.close()


def test_node_restart_breaks_the_stream_and_loses_nothing(tmp_path):
    directory = tmp_path / "lnd"
    node = SimNode(directory).start()
    lnd = connect(node)
    try:
        before = [lnd.create_invoice(1_000 * (n + 1), f"before {n}", 600) for n in range(3)]
        paid(node, before[0].bolt11)
        paid(node, before[1].bolt11)
        subscription = lnd.subscribe_settlements(1)
        [seen] = collect(subscription, 1)
        last_seen = seen.settle_index

        node.stop()
        with pytest.raises(NodeUnavailable):
            subscription.next_batch(timeout=WAIT)
        subscription.close()

        node = SimNode(directory, port=node.port).start()
        paid(node, before[2].bolt11)  # while no one is subscribed

        subscription = lnd.subscribe_settlements(last_seen)
        try:
            [missed] = collect(subscription, 1)
        finally:
            subscription.close()
        assert (missed.payment_hash, missed.settle_index) == (before[2].payment_hash, 3)
        settled_before = lnd.lookup_invoice(before[0].payment_hash)
        assert (settled_before.state, settled_before.settle_index) == ("SETTLED", 1)
        assert lnd.create_invoice(1_000, "after", 600).add_index == 4
    finally:
        lnd.close()
        node.stop()


def test_concurrent_payments_settle_each_invoice_exactly_once(node, lnd):
    invoices = [lnd.create_invoice(1_000 * (n + 1), f"rush {n}", 600) for n in range(20)]
    attempts = [invoice.bolt11 for invoice in invoices] * 2  # every invoice paid twice at once

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda bolt11: control_pay(node.directory, bolt11), attempts))

    accepted = sorted(answer["paymentHash"] for status, answer in answers if status == 200)
    assert accepted == sorted(invoice.payment_hash for invoice in invoices)
    refused = [(status, answer) for status, answer in answers if status != 200]
    assert refused == [(409, {"error": "invoice is already paid"})] * 20
    settle_indexes = sorted(lnd.lookup_invoice(i.payment_hash).settle_index for i in invoices)
    assert settle_indexes == list(range(1, 21))


@pytest.mark.process
def test_simnode_commands_run_a_node_and_pay_its_invoices(tmp_path):
    directory = tmp_path / "lnd"
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    server = subprocess.Popen(
        [*manage, "simnode", "--port", "0", "--dir", str(directory)],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = ""
        while "Pay an invoice" not in banner:
            line = server.stdout.readline()
            assert line, f"simnode exited early: {server.stderr.read()}"
            banner += line
        address = next(line.split()[-1] for line in banner.splitlines() if "gRPC:" in line)
        lnd = LndBackend(
            address,
            str(directory / "tls.cert"),
            str(directory / "admin.macaroon"),
            timeout_seconds=WAIT,
        )
        invoice = lnd.create_invoice(7_000, "from the command line", 600)

        def pay():
            return subprocess.run(
                [*manage, "simnode_pay", "--dir", str(directory), invoice.bolt11],
                cwd=BASE_DIR,
                capture_output=True,
                text=True,
                timeout=30,
            )

        first = pay()
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["state"] == "SETTLED"
        assert lnd.lookup_invoice(invoice.payment_hash).state == "SETTLED"
        again = pay()
        assert again.returncode != 0 and "invoice is already paid" in again.stderr
        lnd.close()

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert not (directory / "control.port").exists()
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()
