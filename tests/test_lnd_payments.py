"""Outgoing payments over real gRPC: the lnd backend against the simulated LND.

What a wallet relies on: PaymentFailed only when a payment certainly failed, PaymentInFlight
whenever the outcome is unknown, and track_payment telling the outcome later, after a
cancelled call, a killed client or a node restart, without sending anything again. The
sim node's control rules put payments in each state (fail, hold until released, delay).
"""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from django.core.management import CommandError, call_command
from lndgrpc.compiled import lightning_pb2 as ln
from lndgrpc.compiled import router_pb2, router_pb2_grpc

from lightning import invoice_codec, services
from lightning.backends.base import (
    NodeUnavailable,
    PaymentFailed,
    PaymentInFlight,
    PaymentNotFound,
)
from lightning.backends.lnd import LndBackend
from lightning.simnode import InvoiceError, SimNode, control_request, route_fee_msat

BASE_DIR = Path(__file__).resolve().parent.parent
WAIT = 15.0  # generous: what should happen soon may take this long on a busy machine
# A pay_invoice timeout for held payments: long enough for the call to reach the node on a
# busy machine (the channel is connected beforehand), as the tests then track the payment.
SHORT = 2.0


@pytest.fixture
def node(tmp_path):
    sim = SimNode(tmp_path / "lnd").start()
    yield sim
    sim.stop()


def connect(node: SimNode) -> LndBackend:
    backend = LndBackend(node.address, str(node.cert_path), str(node.macaroon_path), WAIT)
    backend.get_info()  # connected: a short pay_invoice timeout is not spent on TLS
    return backend


@pytest.fixture
def lnd(node):
    backend = connect(node)
    yield backend
    backend.close()


def sha256_hex(hex_data: str) -> str:
    return hashlib.sha256(bytes.fromhex(hex_data)).hexdigest()


def until(condition, what: str, deadline: float = WAIT):
    """condition()'s first true value, retried on NodeUnavailable (a channel reconnecting
    after a node restart); fails naming `what` when it does not come in time."""
    end = time.monotonic() + deadline
    while True:
        try:
            value = condition()
            if value:
                return value
        except NodeUnavailable:
            pass
        if time.monotonic() > end:
            pytest.fail(f"not within {deadline:g}s: {what}")
        time.sleep(0.05)


def settled_status(lnd: LndBackend, payment_hash: str):
    """The payment's final state, waiting for it."""
    return until(
        lambda: (s := lnd.track_payment(payment_hash, wait_seconds=1)).state != "IN_FLIGHT" and s,
        f"payment {payment_hash} final",
    )


def node_sees(node: SimNode, payment_hash: str, status: str) -> dict:
    def check():
        try:
            payment = node.payment(payment_hash)
        except InvoiceError:
            return None
        return payment if payment["status"] == status else None

    return until(check, f"the node sees payment {payment_hash} {status}")


def test_pays_a_remote_payee_and_tracks_the_same_outcome(node, lnd):
    invoice = node.create_remote_invoice(250_000, "payout")
    assert "preimage" not in invoice, "the payee keeps its preimage until it is paid"
    fee = route_fee_msat(250_000)
    assert fee == 1_000 + 250  # 1 sat + 0.1%

    payment = lnd.pay_invoice(invoice["bolt11"], timeout_seconds=WAIT, fee_limit_msat=2_000)

    assert sha256_hex(payment.preimage) == invoice["payment_hash"] == payment.payment_hash
    assert (payment.amount_msat, payment.fee_msat) == (250_000, fee)
    status = lnd.track_payment(invoice["payment_hash"])
    assert (status.state, status.preimage, status.fee_msat, status.amount_msat) == (
        "SUCCEEDED",
        payment.preimage,
        fee,
        250_000,
    )
    assert status.failure == ""


def test_rounding_of_the_route_fee_and_the_default_fee_limit(node, lnd):
    assert route_fee_msat(1) == 1_001, "0.1% of 1 msat rounds up to 1 msat"
    invoice = node.create_remote_invoice(1_500, "small")  # default limit: 10 sat
    assert lnd.pay_invoice(invoice["bolt11"], timeout_seconds=WAIT).fee_msat == 1_002


def test_fee_limit_below_the_route_fee_fails_and_a_new_attempt_may_follow(node, lnd):
    invoice = node.create_remote_invoice(100_000, "too cheap")
    with pytest.raises(PaymentFailed, match="no route to the destination"):
        lnd.pay_invoice(invoice["bolt11"], timeout_seconds=WAIT, fee_limit_msat=1_099)

    failed = lnd.track_payment(invoice["payment_hash"])
    assert failed.state == "FAILED" and "FAILURE_REASON_NO_ROUTE" in failed.failure
    assert failed.preimage == ""

    # LND lets a failed payment be sent again; this time the limit covers the route.
    paid = lnd.pay_invoice(invoice["bolt11"], timeout_seconds=WAIT, fee_limit_msat=1_100)
    assert paid.fee_msat == 1_100
    assert lnd.track_payment(invoice["payment_hash"]).state == "SUCCEEDED"


def test_payee_refusals_fail_with_incorrect_payment_details(node, lnd):
    unknown = invoice_codec.encode_invoice(  # signed by the payee, but it never issued it
        invoice_codec.load_or_create_key(node.directory / "remote.key"),
        network="regtest",
        payment_hash="ab" * 32,
        payment_addr="cd" * 32,
        amount_msat=5_000,
        memo="forged",
        created_at=invoice_codec.now(),
        expiry_seconds=600,
    )
    with pytest.raises(PaymentFailed, match="INCORRECT_PAYMENT_DETAILS"):
        lnd.pay_invoice(unknown, timeout_seconds=WAIT)

    expired = node.create_remote_invoice(5_000, "late", expiry=1)
    until(lambda: time.time() > expired["expires_at"], "the invoice expired")
    with pytest.raises(PaymentFailed, match="INCORRECT_PAYMENT_DETAILS"):
        lnd.pay_invoice(expired["bolt11"], timeout_seconds=WAIT)
    assert lnd.track_payment(expired["payment_hash"]).state == "FAILED"

    any_amount = lnd.create_invoice(0, "any amount", 600)  # LND wants an amount for it
    with pytest.raises(PaymentFailed, match="refused the payment .INVALID_ARGUMENT"):
        lnd.pay_invoice(any_amount.bolt11, timeout_seconds=WAIT)
    with pytest.raises(PaymentNotFound):
        lnd.track_payment(any_amount.payment_hash)  # refused: it never took it


def test_fail_rule_fails_the_next_payment_with_its_reason(node, lnd):
    node.add_payment_rule("fail", reason="INSUFFICIENT_BALANCE")
    first = node.create_remote_invoice(10_000, "fails")
    second = node.create_remote_invoice(10_000, "goes through")

    with pytest.raises(PaymentFailed, match="not enough outbound liquidity"):
        lnd.pay_invoice(first["bolt11"], timeout_seconds=WAIT)
    status = lnd.track_payment(first["payment_hash"])
    assert status.state == "FAILED" and "INSUFFICIENT_BALANCE" in status.failure

    assert node.payment_rules() == [], "a rule for the next payment is used up"
    assert lnd.pay_invoice(second["bolt11"], timeout_seconds=WAIT).preimage


def test_held_payment_is_in_flight_until_released_and_never_sent_twice(node, lnd):
    invoice = node.create_remote_invoice(40_000, "held")
    node.add_payment_rule("hold", payment_hash=invoice["payment_hash"])

    with pytest.raises(PaymentInFlight, match="still in flight"):
        lnd.pay_invoice(invoice["bolt11"], timeout_seconds=SHORT)
    assert lnd.track_payment(invoice["payment_hash"]).state == "IN_FLIGHT"
    with pytest.raises(PaymentInFlight, match="payment is in transition"):
        lnd.pay_invoice(invoice["bolt11"], timeout_seconds=WAIT)
    assert node.payment(invoice["payment_hash"])["held"] is True

    released = node.release_payment(invoice["payment_hash"], succeed=True)
    assert released["payment_hash"] == invoice["payment_hash"]

    status = settled_status(lnd, invoice["payment_hash"])
    assert status.state == "SUCCEEDED"
    assert sha256_hex(status.preimage) == invoice["payment_hash"]
    assert status.fee_msat == route_fee_msat(40_000)
    # A succeeded hash is refused; callers track instead of sending again.
    with pytest.raises(PaymentFailed, match="invoice is already paid"):
        lnd.pay_invoice(invoice["bolt11"], timeout_seconds=WAIT)


def test_released_to_fail_a_held_payment_fails_with_the_reason(node, lnd):
    invoice = node.create_remote_invoice(40_000, "held, then failed")
    node.add_payment_rule("hold")
    with pytest.raises(PaymentInFlight):
        lnd.pay_invoice(invoice["bolt11"], timeout_seconds=SHORT)

    answer = node.release_payment(invoice["payment_hash"], succeed=False, reason="TIMEOUT")
    assert answer["status"] == "FAILED"

    status = settled_status(lnd, invoice["payment_hash"])
    assert status.state == "FAILED" and "FAILURE_REASON_TIMEOUT" in status.failure
    with pytest.raises(InvoiceError, match="payment already FAILED"):
        node.release_payment(invoice["payment_hash"])


def test_delayed_payment_succeeds_after_the_delay(node, lnd):
    node.add_payment_rule("delay", seconds=0.5, count=2)
    invoice = node.create_remote_invoice(20_000, "delayed")

    payment = lnd.pay_invoice(invoice["bolt11"], timeout_seconds=WAIT)

    assert sha256_hex(payment.preimage) == invoice["payment_hash"]
    assert lnd.track_payment(invoice["payment_hash"]).state == "SUCCEEDED"
    assert [rule["remaining"] for rule in node.payment_rules()] == [1]


def test_a_cancelled_call_does_not_stop_the_payment(node, lnd):
    invoice = node.create_remote_invoice(30_000, "caller gave up")
    node.add_payment_rule("hold")
    channel = grpc.secure_channel(
        node.address,
        grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(node.cert_path.read_bytes()),
            grpc.metadata_call_credentials(
                lambda context, callback: callback(
                    (("macaroon", node.macaroon_path.read_bytes().hex()),), None
                )
            ),
        ),
    )
    try:
        call = router_pb2_grpc.RouterStub(channel).SendPaymentV2(
            router_pb2.SendPaymentRequest(
                payment_request=invoice["bolt11"], timeout_seconds=60, fee_limit_msat=10_000
            ),
            timeout=WAIT,
        )
        assert next(call).status == ln.Payment.IN_FLIGHT
        call.cancel()
    finally:
        channel.close()

    assert lnd.track_payment(invoice["payment_hash"]).state == "IN_FLIGHT"
    node.release_payment(invoice["payment_hash"])
    assert settled_status(lnd, invoice["payment_hash"]).state == "SUCCEEDED"


def test_node_stopping_mid_payment_leaves_it_in_flight_and_restart_finds_it(tmp_path):
    directory = tmp_path / "lnd"
    node = SimNode(directory).start()
    lnd = connect(node)
    try:
        held = node.create_remote_invoice(60_000, "held over a restart")
        delayed = node.create_remote_invoice(70_000, "delayed over a restart")
        node.add_payment_rule("hold", payment_hash=held["payment_hash"])
        node.add_payment_rule("delay", seconds=3, payment_hash=delayed["payment_hash"])

        with ThreadPoolExecutor(max_workers=2) as pool:
            pending = pool.submit(lnd.pay_invoice, held["bolt11"], WAIT * 4)
            pool.submit(lnd.pay_invoice, delayed["bolt11"], WAIT * 4)
            node_sees(node, held["payment_hash"], "IN_FLIGHT")
            node_sees(node, delayed["payment_hash"], "IN_FLIGHT")
            node.stop()  # the streams break after the payments were taken
            with pytest.raises(PaymentInFlight, match="LND may have the payment"):
                pending.result(timeout=WAIT)

        node = SimNode(directory, port=node.port).start()
        status = until(lambda: lnd.track_payment(held["payment_hash"]), "track after restart")
        assert status.state == "IN_FLIGHT", "a held payment stays held across a restart"
        assert settled_status(lnd, delayed["payment_hash"]).state == "SUCCEEDED"

        node.release_payment(held["payment_hash"], succeed=True)
        done = settled_status(lnd, held["payment_hash"])
        assert done.state == "SUCCEEDED" and sha256_hex(done.preimage) == held["payment_hash"]
    finally:
        lnd.close()
        node.stop()


def test_paying_an_own_hold_invoice_is_in_flight_until_canceled(node, lnd):
    invoice = lnd.create_hold_invoice("ee" * 32, 8_000, "held by its owner", 600)
    with pytest.raises(PaymentInFlight):
        lnd.pay_invoice(invoice.bolt11, timeout_seconds=SHORT, fee_limit_msat=0)
    until(lambda: lnd.lookup_invoice(invoice.payment_hash).state == "ACCEPTED", "accepted")
    assert lnd.track_payment(invoice.payment_hash).state == "IN_FLIGHT"

    lnd.cancel_hold_invoice(invoice.payment_hash)

    status = settled_status(lnd, invoice.payment_hash)
    assert status.state == "FAILED" and "INCORRECT_PAYMENT_DETAILS" in status.failure


def test_track_of_a_hash_never_paid_is_not_found(node, lnd):
    with pytest.raises(PaymentNotFound, match="payment isn't initiated"):
        lnd.track_payment("12" * 32)
    invoice = node.create_remote_invoice(1_000, "not paid")
    with pytest.raises(PaymentNotFound):
        lnd.track_payment(invoice["payment_hash"])


def test_node_down_before_the_call_is_unavailable_and_nothing_was_sent(tmp_path):
    """A refused connection sent nothing, so NodeUnavailable is honest (the wallet may
    release the money or retry); once a call had started, the answer is PaymentInFlight."""
    directory = tmp_path / "lnd"
    node = SimNode(directory).start()
    invoice = node.create_remote_invoice(9_000, "while the node is down")
    node.stop()
    # Not connected before (else a call could race the old connection's end: in flight).
    lnd = LndBackend(node.address, str(node.cert_path), str(node.macaroon_path), WAIT)
    try:
        with pytest.raises(NodeUnavailable, match="cannot reach LND"):
            lnd.pay_invoice(invoice["bolt11"], timeout_seconds=WAIT)
        with pytest.raises(NodeUnavailable):
            lnd.track_payment(invoice["payment_hash"])

        node = SimNode(directory, port=node.port).start()
        with pytest.raises(PaymentNotFound):
            until(lambda: lnd.track_payment(invoice["payment_hash"]), "the node answers")
    finally:
        lnd.close()
        node.stop()


def test_services_pay_and_track_through_the_configured_backend(node, settings):
    settings.LIGHTNING_BACKEND = "lnd"
    settings.LND_GRPC_HOST = node.address
    settings.LND_TLS_CERT = str(node.cert_path)
    settings.LND_MACAROON = str(node.macaroon_path)
    settings.LND_TIMEOUT_SECONDS = WAIT
    invoice = node.create_remote_invoice(12_000, "through services")

    payment = services.pay_invoice(invoice["bolt11"], fee_limit_msat=5_000, timeout_seconds=WAIT)

    assert services.track_payment(invoice["payment_hash"]).preimage == payment.preimage
    with pytest.raises(PaymentNotFound):
        services.track_payment("34" * 32)


def test_control_server_answers_json_and_refuses_bad_requests(node):
    status, invoice = control_request(node.directory, "POST", "/invoices", {"amount_msat": 2_000})
    assert status == 200 and set(invoice) >= {"bolt11", "payment_hash"}
    assert "preimage" not in invoice
    hash_ = invoice["payment_hash"]
    assert control_request(node.directory, "GET", f"/payments/{hash_}") == (
        404,
        {"error": "payment isn't initiated"},
    )
    status, rule = control_request(
        node.directory, "POST", "/payments/rules", {"action": "delay", "seconds": 2, "all": True}
    )
    assert status == 200 and (rule["action"], rule["remaining"], rule["seconds"]) == (
        "delay",
        None,
        2,
    )
    assert control_request(node.directory, "GET", "/payments/rules")[1] == {"rules": [rule]}
    assert control_request(node.directory, "DELETE", "/payments/rules") == (200, {"deleted": 1})

    refused = [
        ("POST", "/invoices", {"amount_msat": "2000"}, 400, "amount_msat must be a positive"),
        ("POST", "/payments/rules", {"action": "explode"}, 400, "action must be one of"),
        ("POST", "/payments/rules", {"action": "fail", "reason": "BAD"}, 400, "unknown failure"),
        ("POST", "/payments/rules", {"action": "delay"}, 400, "a delay needs seconds"),
        ("POST", "/payments/rules", {"action": "hold", "count": 0}, 400, "count must be"),
        ("POST", f"/payments/{hash_}/release", {"outcome": "succeed"}, 404, "isn't initiated"),
        ("POST", f"/payments/{hash_}/release", {}, 400, 'outcome must be "succeed"'),
        ("GET", "/payments/nothex", None, 400, "64 hex digits"),
        ("GET", "/nowhere", None, 404, "no GET /nowhere here"),
    ]
    for method, path, body, code, words in refused:
        status, answer = control_request(node.directory, method, path, body)
        assert status == code and words in answer["error"], (method, path, body, answer)


def _manage(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _start_simnode(directory: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "simnode", "--port", "0"]
        + ["--dir", str(directory)],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = ""
    while "Pay an invoice" not in banner:
        line = server.stdout.readline()
        assert line, f"simnode exited early: {server.stderr.read()}"
        banner += line
    return server, next(line.split()[-1] for line in banner.splitlines() if "gRPC:" in line)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            server.kill()
    server.communicate()


def _control(directory: Path, *args: str) -> dict:
    """`manage.py simnode_control --dir D ...` in this process: its JSON answer."""
    out = io.StringIO()
    call_command("simnode_control", "--dir", str(directory), *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.process
def test_simnode_control_commands_drive_a_node_in_another_process(tmp_path):
    directory = tmp_path / "lnd"
    server, address = _start_simnode(directory)
    lnd = LndBackend(address, str(directory / "tls.cert"), str(directory / "admin.macaroon"), WAIT)
    try:
        lnd.get_info()
        made = _manage("simnode_control", "--dir", str(directory), "invoice", "--amount-sat", "100")
        assert made.returncode == 0, made.stderr
        invoice = json.loads(made.stdout)
        assert invoice["amount_msat"] == 100_000
        hash_ = invoice["payment_hash"]
        assert _control(directory, "hold", "--hash", hash_)["payment_hash"] == hash_

        with pytest.raises(PaymentInFlight):
            lnd.pay_invoice(invoice["bolt11"], timeout_seconds=SHORT)
        shown = _control(directory, "payment", hash_)
        assert (shown["status"], shown["held"]) == ("IN_FLIGHT", True)

        _control(directory, "release", hash_, "--succeed")
        assert settled_status(lnd, hash_).state == "SUCCEEDED"
        with pytest.raises(CommandError, match="payment already SUCCEEDED"):
            _control(directory, "release", hash_, "--fail")

        _control(directory, "fail", "--reason", "ERROR", "--count", "1")
        other = _control(directory, "invoice", "--amount-msat", "5000")
        with pytest.raises(PaymentFailed, match="FAILURE_REASON_ERROR"):
            lnd.pay_invoice(other["bolt11"], timeout_seconds=WAIT)

        delayed = _control(directory, "delay", "0.5", "--all")
        assert (delayed["action"], delayed["remaining"], delayed["seconds"]) == ("delay", None, 0.5)
        third = _control(directory, "invoice", "--amount-sat", "3")
        assert lnd.pay_invoice(third["bolt11"], timeout_seconds=WAIT).preimage
        assert _control(directory, "rules") == {"rules": [delayed]}, "an 'all' rule stays"
        assert _control(directory, "rules", "--clear") == {"deleted": 1}

        with pytest.raises(CommandError, match="unknown failure reason 'NOPE'"):
            _control(directory, "fail", "--reason", "NOPE")
        with pytest.raises(CommandError, match="HASH must be a payment hash"):
            _control(directory, "payment", "xyz")
    finally:
        lnd.close()
        _stop(server)
    gone = _manage("simnode_control", "--dir", str(directory), "rules")
    assert gone.returncode != 0 and "no sim node is running" in gone.stderr


PAYER = textwrap.dedent(
    """
    import sys
    from lightning.backends.lnd import LndBackend

    address, cert, macaroon, bolt11 = sys.argv[1:]
    LndBackend(address, cert, macaroon, 60).pay_invoice(bolt11, timeout_seconds=600)
    """
)


@pytest.mark.process
def test_a_killed_client_does_not_stop_the_payment(node, lnd):
    invoice = node.create_remote_invoice(33_000, "payer killed")
    node.add_payment_rule("hold")
    payer = subprocess.Popen(
        [sys.executable, "-c", PAYER, node.address, str(node.cert_path)]
        + [str(node.macaroon_path), invoice["bolt11"]],
        cwd=BASE_DIR,
        env={**os.environ, "PYTHONPATH": str(BASE_DIR)},
        stderr=subprocess.PIPE,
    )
    try:
        node_sees(node, invoice["payment_hash"], "IN_FLIGHT")
        payer.send_signal(signal.SIGKILL)
        assert payer.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        if payer.poll() is None:
            payer.kill()
        payer.communicate()

    assert lnd.track_payment(invoice["payment_hash"]).state == "IN_FLIGHT"
    node.release_payment(invoice["payment_hash"])
    status = settled_status(lnd, invoice["payment_hash"])
    assert status.state == "SUCCEEDED" and sha256_hex(status.preimage) == invoice["payment_hash"]
