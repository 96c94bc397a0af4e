"""What a paid L402 invoice sets off: `l402.paid` in the merchant's webhook outbox and, for a
proxy an agent sells, the agent's stats."""

from __future__ import annotations

from agents import services as agents_services
from lightning.models import Invoice
from webhooks.services import emit, isoformat

from ..models import L402Challenge, OneTimeKey


def announce_paid(invoice: Invoice) -> None:
    """Write `l402.paid` to the merchant's webhook outbox when the paid invoice belongs to
    a challenge or a one-time key (inside the transaction of the payment)."""
    challenge = L402Challenge.objects.select_related("merchant", "proxy").filter(invoice=invoice)
    challenge = challenge.first()
    if challenge is not None and challenge.merchant is not None:
        emit(
            challenge.merchant,
            "l402.paid",
            {
                "challengeId": challenge.public_id,
                "kind": challenge.kind,
                "resource": challenge.resource,
                "proxyId": challenge.proxy.proxy_id if challenge.proxy else None,
                "amountSats": challenge.price_sats,
                "paymentHash": invoice.payment_hash,
                "paidAt": isoformat(invoice.paid_at),
            },
            source=f"l402:{challenge.pk}",
        )
        if challenge.proxy is not None:
            _count_for_agent(
                challenge.proxy.proxy_id,
                challenge.proxy.merchant_id,
                challenge.price_sats,
                invoice.payment_hash,
            )
        return
    # The key's own record, not its proxy: the proxy may be deleted by now.
    key = OneTimeKey.objects.select_related("merchant").filter(invoice=invoice).first()
    if key is not None:
        emit(
            key.merchant,
            "l402.paid",
            {
                "challengeId": None,
                "kind": "one_time_key",
                "resource": f"proxy/{key.proxy_public_id} {key.method} {key.path}",
                "proxyId": key.proxy_public_id,
                "amountSats": key.price_sats,
                "paymentHash": invoice.payment_hash,
                "paidAt": isoformat(invoice.paid_at),
            },
            source=f"l402-key:{key.pk}",
        )
        _count_for_agent(key.proxy_public_id, key.merchant_id, key.price_sats, invoice.payment_hash)


def _count_for_agent(proxy_id: str, merchant_id: int, amount_sats: int, payment_hash: str):
    """A paid call through a proxy that an agent of the proxy's merchant sells as a
    capability counts in that agent's stats (requests and revenue)."""
    agents_services.record_l402_payment(
        f"/l402/proxy/{proxy_id}", amount_sats, payment_hash, seller_id=merchant_id
    )
