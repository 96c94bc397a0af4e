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


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_a_refund_in_flight_when_everything_is_killed_ends_as_the_node_says(
    tmp_path, node: SimNode, outcome
):
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
        made = api(
            stack,
            "POST",
            f"/api/checkout/invoices/{sale.json()['invoiceId']}/refunds",
            json={"amountSats": REFUND},
        )
        assert made.status_code == 201, made.text
        lnurl_withdraw = httpx.get(made.json()["claimUrl"].replace("/refund/", "/lnurlw/")).json()
        node.add_payment_rule("hold")
        remote = node.create_remote_invoice(REFUND * 1000, "the buyer's wallet")
        claimed = httpx.get(
            lnurl_withdraw["callback"],
            params={"k1": lnurl_withdraw["k1"], "pr": remote["bolt11"]},
            timeout=30,
        )
        assert claimed.json() == {"status": "OK"}
        wait_for(lambda: in_flight_on_node(node, remote["payment_hash"]), 60, "the payout")
        assert refund_row(made.json()["refundId"]).state == "paying"

        stack.kill()  # web, worker and beat at once, mid-payout
        released = node.release_payment(remote["payment_hash"], succeed=outcome == "succeed")
        stack.start()

        final = "completed" if outcome == "succeed" else "claimable"
        refund_id = made.json()["refundId"]
        wait_for(lambda: refund_row(refund_id).state == final, 90, f"the refund to be {final}")
        refund = refund_row(refund_id)
        payments = list(Payment.objects.filter(direction="out"))
        assert len(payments) == 1  # one payout, never sent twice
        assert node.payment(remote["payment_hash"])["status"] == (
            "SUCCEEDED" if outcome == "succeed" else "FAILED"
        )
        shown = api(stack, "GET", f"/api/refunds/{refund_id}").json()
        if outcome == "succeed":
            assert refund.payout.preimage == released["preimage"] == shown["payoutPreimage"]
            assert balance_msat() == total - REFUND * 1000 - payments[0].fee_msat
        else:
            # Not paid, and it says so: the buyer's link is open again with the reason.
            assert "not paid" in shown["failureReason"] and shown["lnurl"]
            assert balance_msat() == total
    finally:
        stack.stop()
