"""A refund's payout through the stack `make run` starts (uvicorn, a Celery worker with
beat) on the lnd backend, against the simulated LND over gRPC, with everything SIGKILLed
while the payout is in flight: the refund ends as the node says, paid once or not at all,
and its state says which."""

from __future__ import annotations

import httpx
import pytest

from lightning.simnode import SimNode
from refunds.models import Refund
from wallets.models import Payment, Wallet

from .processes import wait_for
from .test_wallets_process import FUNDS, api, balance_msat, fund, in_flight_on_node, start_stack

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

SALE = 5_000  # sats
REFUND = 1_000  # sats


@pytest.fixture
def node(tmp_path):
    sim = SimNode(tmp_path / "lnd").start()
    yield sim
    sim.stop()


def refund_row(refund_id: str) -> Refund:
    return Refund.objects.get(public_id=refund_id)


def test_refunds_in_flight_when_everything_is_killed_end_as_the_node_says(tmp_path, node: SimNode):
    """Two refunds of one sale paying out when the whole stack is SIGKILLed; while it is
    down the node finishes one payout and fails the other. (Both outcomes under one stack:
    starting one takes seconds.)"""
    stack = start_stack(tmp_path, node)
    try:
        fund(stack, node)  # the fee budget
        sale = api(
            stack, "POST", "/api/checkout/invoices", json={"amount": str(SALE), "currency": "SAT"}
        )
        assert sale.status_code == 201, sale.text
        node.pay(sale.json()["lightningInvoice"])
        total = (FUNDS + SALE) * 1000
        wait_for(lambda: Wallet.objects.filter(balance_msat=total).exists(), 60, "the sale")
        refund_ids, remotes = {}, {}
        for outcome in ("succeed", "fail"):
            made = api(
                stack,
                "POST",
                f"/api/checkout/invoices/{sale.json()['invoiceId']}/refunds",
                json={"amountSats": REFUND},
            )
            assert made.status_code == 201, made.text
            refund_ids[outcome] = made.json()["refundId"]
            lnurl_withdraw = httpx.get(
                made.json()["claimUrl"].replace("/refund/", "/lnurlw/")
            ).json()
            remote = remotes[outcome] = node.create_remote_invoice(
                REFUND * 1000, f"the buyer's wallet ({outcome})"
            )
            node.add_payment_rule("hold", payment_hash=remote["payment_hash"])
            claimed = httpx.get(
                lnurl_withdraw["callback"],
                params={"k1": lnurl_withdraw["k1"], "pr": remote["bolt11"]},
                timeout=30,
            )
            assert claimed.json() == {"status": "OK"}
            wait_for(lambda r=remote: in_flight_on_node(node, r["payment_hash"]), 60, "the payout")
            assert refund_row(refund_ids[outcome]).state == "paying"

        stack.kill()  # web, worker and beat at once, mid-payout
        released = {
            outcome: node.release_payment(remote["payment_hash"], succeed=outcome == "succeed")
            for outcome, remote in remotes.items()
        }
        stack.start()

        finals = {"succeed": "completed", "fail": "claimable"}
        for outcome, final in finals.items():
            wait_for(
                lambda i=refund_ids[outcome], final=final: refund_row(i).state == final,
                90,
                f"the refund to be {final}",
            )
        outgoing = list(Payment.objects.filter(direction="out"))
        payments = {p.payment_hash: p for p in outgoing}
        # One payout per refund, never sent twice.
        assert len(outgoing) == 2
        assert set(payments) == {remote["payment_hash"] for remote in remotes.values()}
        for outcome, remote in remotes.items():
            assert node.payment(remote["payment_hash"])["status"] == (
                "SUCCEEDED" if outcome == "succeed" else "FAILED"
            )
        completed = refund_row(refund_ids["succeed"])
        shown = api(stack, "GET", f"/api/refunds/{refund_ids['succeed']}").json()
        preimage = released["succeed"]["preimage"]
        assert completed.payout.preimage == preimage == shown["payoutPreimage"]
        # Not paid, and it says so: the buyer's link is open again with the reason.
        shown = api(stack, "GET", f"/api/refunds/{refund_ids['fail']}").json()
        assert "not paid" in shown["failureReason"] and shown["lnurl"]
        # The completed refund cost its amount and fee once; the failed one nothing.
        fee = payments[remotes["succeed"]["payment_hash"]].fee_msat
        assert balance_msat() == total - REFUND * 1000 - fee
    finally:
        stack.stop()
