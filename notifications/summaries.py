"""The daily summary email (`Merchant.notify_daily_summary`): yesterday's sales, sent once a
day after NOTIFY_DAILY_SUMMARY_HOUR_UTC by a Celery beat task.

The day is claimed with a conditional update of `Merchant.daily_summary_sent_on` before the
email is sent, so two beats (or a beat and a retry) never both send it; a send that fails
gives the day back, and the next beat tries again.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from checkout.models import Merchant

from .selectors import DayFigures, day_figures

log = logging.getLogger(__name__)


def _unsent_on(today: date) -> Q:
    return Q(daily_summary_sent_on__isnull=True) | Q(daily_summary_sent_on__lt=today)


def send_daily_summaries(now: datetime | None = None) -> int:
    """Send yesterday's summary to every merchant that wants one and has not had today's,
    once the hour has come. Returns how many were sent."""
    now = (now or timezone.now()).astimezone(UTC)
    if now.hour < settings.NOTIFY_DAILY_SUMMARY_HOUR_UTC:
        return 0
    today = now.date()
    due = (
        Merchant.objects.filter(_unsent_on(today), notify_daily_summary=True)
        .exclude(email="")
        .values_list("pk", flat=True)
    )
    sent = 0
    for merchant_id in list(due):
        try:
            sent += send_daily_summary(merchant_id, today)
        except Exception:
            log.exception("daily summary for merchant %s not sent; will retry", merchant_id)
    return sent


def send_daily_summary(merchant_id: int, today: date) -> bool:
    """Send the merchant the summary of the day before `today`, unless today's was sent
    (or is being sent). Returns whether this call sent it."""
    merchant = Merchant.objects.filter(pk=merchant_id).first()
    if merchant is None:
        return False
    previous = merchant.daily_summary_sent_on
    claimed = (
        Merchant.objects.filter(_unsent_on(today), pk=merchant_id, notify_daily_summary=True)
        .exclude(email="")
        .update(daily_summary_sent_on=today)
    )
    if not claimed:
        return False
    try:
        subject, body = summary_email(merchant, day_figures(merchant, today - timedelta(days=1)))
        send_mail(
            subject=subject,
            message=body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[merchant.email],
        )
    except Exception:
        Merchant.objects.filter(pk=merchant_id, daily_summary_sent_on=today).update(
            daily_summary_sent_on=previous
        )
        raise
    return True


def summary_email(merchant: Merchant, figures: DayFigures) -> tuple[str, str]:
    """The subject and body of one day's summary."""
    day = f"{figures.day:%Y-%m-%d}"
    subject = f"Your sales on {day}: {figures.count} paid, {figures.sats:,} sats"
    lines = [
        f"Sales of {merchant.name} on {day} (UTC)",
        "",
        f"Paid:           {figures.count}",
        f"Revenue:        {figures.sats:,} sats",
        *(f"                {amount:.2f} {currency}" for currency, amount in figures.fiat.items()),
    ]
    if figures.top_products:
        lines.append("Top products:")
        lines += [
            f"  {n}. {row['product__name']}: {row['units']} sold, {row['sats']:,} sats"
            for n, row in enumerate(figures.top_products, 1)
        ]
    lines += [
        f"Open invoices:  {figures.open_invoices} (payable now)",
        "",
        f"Your merchant site: {settings.PUBLIC_BASE_URL}{reverse('dashboard:home')}",
        "",
        "You get this email because the daily summary is on in the settings of your merchant site.",
    ]
    return subject, "\n".join(lines) + "\n"
