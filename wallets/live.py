"""LNbits' websocket pushes (realtime.push), in the transaction of the change: to a wallet's
sockets, `{"wallet_balance": <sats>, "payment": <details>}` for each settled incoming
payment; to a payment hash's sockets, `{"pending": false, "status": ...}` once the payment
is final."""

from realtime.push import publish

from .models import Payment, Wallet
from .serializers import payment_details

FINAL = (Payment.Status.SUCCESS, Payment.Status.FAILED)


def wallet_group(wallet_id: int) -> str:
    return f"wallet.{wallet_id}"


def payment_group(payment_hash: str) -> str:
    return f"payment.{payment_hash.lower()}"


def hash_message(payment: Payment) -> dict:
    return {"pending": False, "status": payment.status}


def wallet_message(payment: Payment, balance_msat: int | None = None) -> dict:
    if balance_msat is None:
        balance_msat = Wallet.objects.values_list("balance_msat", flat=True).get(
            pk=payment.wallet_id
        )
    return {"wallet_balance": balance_msat // 1000, "payment": payment_details(payment)}


def announce(payment: Payment, balance_msat: int | None = None) -> None:
    """`balance_msat`: the wallet's balance after this payment, when the caller has it."""
    if payment.status not in FINAL:
        return
    publish(payment_group(payment.payment_hash), hash_message(payment))
    if payment.direction == Payment.Direction.IN and payment.status == Payment.Status.SUCCESS:
        publish(wallet_group(payment.wallet_id), wallet_message(payment, balance_msat))
