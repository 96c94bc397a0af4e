"""An email to the merchant on each sale (`Merchant.notify_each_sale`).

A sale is an invoice a merchant's own wallet received, whatever sold it (a checkout, a
Shopify order, an L402 purchase, a reseller order, a wallet invoice). The notice is written
in the transaction that marks the invoice paid (a reaction to every paid invoice), so it
commits with the payment; a task sends it after commit, and a periodic sweep sends any that a
crash or a broker outage left behind. As checkout's receipts, each notice is claimed with a
conditional update of `sent_at` before it is sent, so two senders never both send it; a
send that fails releases the claim for the sweep to retry.
"""

from __future__ import annotations

import logging
from datetime import UTC

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from config.prepared import Prepared
from lightning.models import Invoice
from wallets.models import Payment, Wallet

from .models import SaleNotice
from .selectors import sale_of

log = logging.getLogger(__name__)

SWEEP_BATCH = 200

# Read for every invoice paid (most merchants want no email per sale), so prepared: one
# lookup by the payment's unique invoice, joined to its wallet and merchant by key.
_merchant_to_notify = Prepared(
    lambda invoice_id: (
        Payment.objects.filter(
            invoice_id=invoice_id,
            wallet__owner=Wallet.Owner.MERCHANT,
            wallet__merchant__notify_each_sale=True,
        )
        .exclude(wallet__merchant__email="")
        .values_list("wallet__merchant_id")[:1]
    ),
    integers=True,
)


def mark_sale_notice_due(invoice: Invoice) -> bool:
    """Inside the payment's transaction: record that the merchant who received `invoice`
    is owed an email about it, if it wants one. Returns whether one is owed. Run again for
    the same invoice (a retried reaction), it owes no second one."""
    found = _merchant_to_notify.first(invoice.pk)
    if found is None:
        return False
    SaleNotice.objects.bulk_create(
        [SaleNotice(merchant_id=found[0], invoice_id=invoice.pk, due_at=timezone.now())],
        ignore_conflicts=True,
    )
    return True


def send_sale_notice(invoice_id: int) -> bool:
    """Send the notice of this invoice's sale unless it has been sent (or is being sent).
    Returns whether this call sent it."""
    claimed_at = timezone.now()
    claimed = SaleNotice.objects.filter(invoice_id=invoice_id, sent_at__isnull=True).update(
        sent_at=claimed_at
    )
    if not claimed:
        return False
    notice = SaleNotice.objects.select_related("merchant", "invoice").get(invoice_id=invoice_id)
    if not notice.merchant.email:
        log.info("sale notice for invoice %s dropped: the merchant has no email", invoice_id)
        return False
    try:
        subject, body = sale_email(notice)
        send_mail(
            subject=subject,
            message=body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[notice.merchant.email],
        )
    except Exception:
        SaleNotice.objects.filter(invoice_id=invoice_id, sent_at=claimed_at).update(sent_at=None)
        raise
    return True


def send_due_sale_notices() -> int:
    """Send every notice that is due and unsent (the sweep). Returns how many were sent."""
    due = (
        SaleNotice.objects.filter(sent_at__isnull=True)
        .order_by("due_at")
        .values_list("invoice_id", flat=True)[:SWEEP_BATCH]
    )
    sent = 0
    for invoice_id in due:
        try:
            sent += send_sale_notice(invoice_id)
        except Exception:
            log.exception("sale notice for invoice %s not sent; will retry", invoice_id)
    return sent


def sale_email(notice: SaleNotice) -> tuple[str, str]:
    """The subject and body of a sale notice."""
    invoice = notice.invoice
    sale = sale_of(invoice)
    sats = f"{(invoice.amount_paid_msat or invoice.amount_msat) // 1000:,} sats"
    amount = f"{sale.fiat} ({sats})" if sale.fiat else sats
    # One line, whatever the description holds (a header may not break).
    subject = " ".join(f"New sale: {amount} — {sale.what}".split())
    lines = [
        f"{notice.merchant.name} made a sale.",
        "",
        f"What:         {sale.what}",
        *(f"{f'{label}:':<14}{value}" for label, value in sale.details),
        f"Amount:       {sats}",
    ]
    if sale.fiat:
        lines.append(f"Priced at:    {sale.fiat}")
    lines += [
        f"Invoice:      {sale.reference}",
        f"Paid at:      {invoice.paid_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
    ]
    if invoice.paid_late:
        lines.append("              (after the invoice had expired)")
    if sale.link:
        lines += ["", f"Details: {sale.link}"]
    lines += [
        "",
        "You get this email because sale notices are on in the settings of your merchant site.",
    ]
    return subject[:300], "\n".join(lines) + "\n"
