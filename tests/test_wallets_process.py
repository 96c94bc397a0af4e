"""Payments out through the stack `make run` starts (uvicorn, a Celery worker with the
watcher and beat) on the lnd backend, against the simulated LND over gRPC, when things go wrong:
the whole stack SIGKILLed while a payment is in flight, the node going down during one, and
two requests paying one invoice at once. Each payment must end as the node says, debited
once or released, and never be sent twice."""

from __future__ import annotations

import threading

import httpx
import pytest

from lightning.simnode import SimNode
from wallets import services as wallets
from wallets.models import LedgerEntry, Payment, Wallet

from .processes import Stack, free_port, wait_for

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

FUNDS = 10_000  # sats
PAY = 1_000  # sats


@pytest.fixture
def node(tmp_path):
    sim = SimNode(tmp_path / "lnd").start()
    yield sim
    sim.stop()


def start_stack(tmp_path, node: SimNode, port: int | None = None) -> Stack:
    return Stack(
        tmp_path,
        port or free_port(),
        LIGHTNING_BACKEND="lnd",
        LND_GRPC_HOST=node.address,
        LND_TLS_CERT=str(node.cert_path),
        LND_MACAROON=str(node.macaroon_path),
        WALLETS_SWEEP_SECONDS="1",
    ).start()


def api(stack: Stack, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(
        method, f"{stack.base}{path}", headers={"X-Api-Key": stack.key}, timeout=120, **kwargs
    )


def balance_msat() -> int:
    wallet = Wallet.objects.get()
    assert wallet.balance_msat == wallets.ledger_balance_msat(wallet), "cache != ledger"
    return wallet.balance_msat


def fund(stack: Stack, node: SimNode) -> None:
    made = api(stack, "POST", "/api/v1/payments", json={"out": False, "amount": FUNDS})
    assert made.status_code == 201, made.text
    node.pay(made.json()["bolt11"])  # a wallet elsewhere pays it; the watcher records it
    wait_for(lambda: Wallet.objects.filter(balance_msat=FUNDS * 1000).exists(), 60, "funds")


class Payer(threading.Thread):
    """POST /api/v1/payments {out: true} in the background (it blocks while in flight)."""

    def __init__(self, stack: Stack, bolt11: str):
        super().__init__(daemon=True)
        self.stack, self.bolt11 = stack, bolt11
        self.answer: httpx.Response | None = None
        self.error: Exception | None = None

    def run(self):
        try:
            self.answer = api(
                self.stack, "POST", "/api/v1/payments", json={"out": True, "bolt11": self.bolt11}
            )
        except httpx.HTTPError as exc:  # the stack was killed under it
            self.error = exc


def in_flight_on_node(node: SimNode, payment_hash: str) -> bool:
    try:
        return node.payment(payment_hash)["status"] == "IN_FLIGHT"
    except Exception:
        return False


def outgoing() -> Payment:
    return Payment.objects.get(direction=Payment.Direction.OUT)


def test_payments_in_flight_when_everything_is_killed_end_as_the_node_says(tmp_path, node):
    """Two payments in flight when the whole stack is SIGKILLed; while it is down the node
    finishes one and fails the other. Each must end as the node says: the one debited once,
    the other released. (Both outcomes under one stack: starting one takes seconds.)"""
    stack = start_stack(tmp_path, node)
    try:
        fund(stack, node)
        remotes, payers = {}, {}
        for outcome in ("succeed", "fail"):
            remote = remotes[outcome] = node.create_remote_invoice(PAY * 1000, f"killed {outcome}")
            node.add_payment_rule("hold", payment_hash=remote["payment_hash"])
            payers[outcome] = Payer(stack, remote["bolt11"])
            payers[outcome].start()
        for remote in remotes.values():
            wait_for(
                lambda r=remote: in_flight_on_node(node, r["payment_hash"]),
                60,
                "the node to take it",
            )
        reserved = {
            outcome: Payment.objects.get(payment_hash=remote["payment_hash"])
            for outcome, remote in remotes.items()
        }
        assert {p.status for p in reserved.values()} == {"pending"}
        assert balance_msat() == FUNDS * 1000 - sum(
            PAY * 1000 + p.fee_limit_msat for p in reserved.values()
        )

        stack.kill()  # web, worker and beat at once, mid-payment
        for payer in payers.values():
            payer.join(30)
        released = {
            outcome: node.release_payment(remote["payment_hash"], succeed=outcome == "succeed")
            for outcome, remote in remotes.items()
        }
        stack.start()

        finals = {"succeed": "success", "fail": "failed"}
        for outcome, final in finals.items():
            pk = reserved[outcome].pk
            wait_for(
                lambda pk=pk, final=final: Payment.objects.get(pk=pk).status == final,
                60,
                f"the payment to end {final}",
            )
        paid = Payment.objects.get(pk=reserved["succeed"].pk)
        failed = Payment.objects.get(pk=reserved["fail"].pk)
        assert paid.preimage == released["succeed"]["preimage"]
        assert paid.fee_msat == released["succeed"]["fee_msat"] > 0
        assert list(paid.entries.values_list("kind", flat=True)) == ["reserve", "settle"]
        assert list(failed.entries.values_list("kind", flat=True)) == ["reserve", "release"]
        # The failed one released all it reserved; the other cost its amount and fee once.
        assert balance_msat() == FUNDS * 1000 - PAY * 1000 - paid.fee_msat
        for outcome, payment in (("succeed", paid), ("fail", failed)):
            # Found with TrackPaymentV2, never sent again: the node saw one attempt.
            assert node.payment(payment.payment_hash)["status"] == (
                "SUCCEEDED" if outcome == "succeed" else "FAILED"
            )
            shown = api(stack, "GET", f"/api/v1/payments/{payment.payment_hash}").json()
            assert shown["details"]["status"] == finals[outcome]
        assert Payment.objects.filter(direction=Payment.Direction.OUT).count() == 2
    finally:
        stack.stop()


def test_two_pays_of_one_invoice_make_one_payment_and_a_node_outage_loses_none(tmp_path, node):
    stack = start_stack(tmp_path, node)
    try:
        fund(stack, node)

        # Two requests pay one invoice at once: one payment, one debit.
        node.add_payment_rule("hold")
        remote = node.create_remote_invoice(PAY * 1000, "double click")
        first, second = Payer(stack, remote["bolt11"]), Payer(stack, remote["bolt11"])
        first.start()
        second.start()
        wait_for(lambda: in_flight_on_node(node, remote["payment_hash"]), 60, "the node to take it")
        node.release_payment(remote["payment_hash"], succeed=True)
        first.join(60)
        second.join(60)
        statuses = sorted(p.answer.status_code for p in (first, second))
        # The one that waited for the node: 201; the other saw the same payment, paid (201)
        # or still in flight (520, status pending): never a second payment.
        assert statuses[0] == 201 and statuses[1] in (201, 520), statuses
        assert Payment.objects.filter(direction="out").count() == 1
        fee = outgoing().fee_msat
        assert balance_msat() == (FUNDS - PAY) * 1000 - fee
        assert LedgerEntry.objects.filter(kind="reserve").count() == 1

        # The node goes down while a payment is in flight: "pending", never "failed".
        node.add_payment_rule("hold")
        remote = node.create_remote_invoice(PAY * 1000, "node outage")
        payer = Payer(stack, remote["bolt11"])
        payer.start()
        wait_for(lambda: in_flight_on_node(node, remote["payment_hash"]), 60, "the node to take it")
        node.stop()
        payer.join(60)
        assert payer.answer.status_code == 520, payer.answer.text
        assert payer.answer.json()["status"] == "pending"
        pending = Payment.objects.get(payment_hash=remote["payment_hash"])
        assert pending.status == "pending"

        restarted = SimNode(node.directory, port=node.port).start()
        try:
            restarted.release_payment(remote["payment_hash"], succeed=True)
            wait_for(
                lambda: Payment.objects.get(pk=pending.pk).status == "success",
                60,
                "the sweep to record the payment the node finished",
            )
            second_fee = Payment.objects.get(pk=pending.pk).fee_msat
            assert balance_msat() == (FUNDS - 2 * PAY) * 1000 - fee - second_fee
        finally:
            restarted.stop()
    finally:
        stack.stop()
