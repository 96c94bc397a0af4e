"""Money and time as the merchant site shows them: sats with thousands separators, fiat with
its currency, one date format (UTC, the server's time zone)."""

from decimal import Decimal

from django import template
from django.utils import timezone

register = template.Library()

SYMBOLS = {"USD": "$", "EUR": "€"}


@register.filter
def sats(value) -> str:
    value = int(value or 0)
    return f"{value:,} sat" if value == 1 else f"{value:,} sats"


@register.filter
def msat_as_sats(value) -> str:
    return sats(int(value or 0) // 1000)


@register.filter
def money(amount, currency) -> str:
    """An amount in its currency: "$12.50", "€29.00", "2,100 sats"."""
    if currency == "SAT":
        return sats(amount)
    amount = Decimal(amount or 0)
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{amount:,.2f}" if symbol else f"{amount:,.2f} {currency}"


@register.filter
def moment(value) -> str:
    """One date format everywhere: 2026-12-01 14:05 UTC."""
    if not value:
        return "—"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M UTC")
