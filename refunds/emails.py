"""The buyer's refund emails: the refund link (when the buyer's email is known and the
refund waits to be claimed) and the receipt once it is paid.

As checkout's receipts: the need is recorded in the transaction of the change (`*_due_at`),
a task sends it after commit, the sweep sends what a crash left; each email is claimed with
a conditional update before it is sent, and a failed send releases the claim.
"""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from .models import Refund

log = logging.getLogger(__name__)

# (due field, sent field, state the refund must be in)
KINDS = (
    ("link_email_due_at", "link_emailed_at", Refund.State.CLAIMABLE),
    ("receipt_due_at", "receipt_sent_at", Refund.State.COMPLETED),
)


def send_soon(refund_id: int) -> None:
    from . import tasks

    transaction.on_commit(lambda: tasks.send_emails.delay(refund_id), robust=True)


def send(refund_id: int) -> int:
    """Send the emails due for this refund (each once). Returns how many were sent."""
    sent = 0
    for due, done, state in KINDS:
        claimed_at = timezone.now()
        claimed = Refund.objects.filter(
            pk=refund_id, state=state, **{f"{due}__isnull": False, f"{done}__isnull": True}
        ).update(**{done: claimed_at})
        if not claimed:
            continue
        refund = Refund.objects.select_related("merchant", "payout").get(pk=refund_id)
        subject, body = _link_email(refund) if done == "link_emailed_at" else _receipt(refund)
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [refund.email])
        except Exception:
            Refund.objects.filter(pk=refund_id, **{done: claimed_at}).update(**{done: None})
            raise
        sent += 1
    return sent


def send_due(limit: int = 200) -> int:
    sent = 0
    for due, done, state in KINDS:
        ids = Refund.objects.filter(
            state=state, **{f"{due}__isnull": False, f"{done}__isnull": True}
        ).values_list("pk", flat=True)[:limit]
        for refund_id in ids:
            try:
                sent += send(refund_id)
            except Exception:
                log.exception("refund %s: email not sent (will retry)", refund_id)
    return sent


def _amount(refund: Refund) -> str:
    sats = f"{refund.amount_msat // 1000:,} sats"
    if refund.fiat_amount is not None:
        return f"{refund.fiat_amount:.2f} {refund.currency} ({sats})"
    return sats


def _link_email(refund: Refund):
    from .serializers import claim_url

    merchant = refund.merchant.name
    lines = [
        f"{merchant} is refunding you {_amount(refund)}.",
        "",
        "Open this link and scan its QR code with any Lightning wallet (LNURL-withdraw), or",
        "paste an invoice of exactly that amount:",
        "",
        claim_url(refund),
        "",
        f"The link can be used once and works until "
        f"{refund.claim_expires_at:%Y-%m-%d %H:%M} UTC. Refund {refund.public_id}.",
    ]
    if refund.reason:
        lines[1:1] = ["", f"Reason: {refund.reason}"]
    return f"Your refund from {merchant}", "\n".join(lines) + "\n"


def _receipt(refund: Refund):
    merchant = refund.merchant.name
    payout = refund.payout
    lines = [
        f"{merchant} has refunded you {_amount(refund)}.",
        "",
        f"Refund:        {refund.public_id}",
        f"Paid at:       {refund.completed_at:%Y-%m-%d %H:%M:%S} UTC",
        f"For:           {refund.source} {refund.source_id}",
    ]
    if refund.reason:
        lines.append(f"Reason:        {refund.reason}")
    if payout is not None:
        lines += [f"Payment hash:  {payout.payment_hash}", f"Preimage:      {payout.preimage}"]
    lines += ["", "The preimage is the proof that the refund was paid."]
    return f"Your refund from {merchant} was paid", "\n".join(lines) + "\n"
