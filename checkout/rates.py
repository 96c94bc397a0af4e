"""Fiat to sats: exchange rates and the exact conversion.

`RATE_PROVIDER=fixed` (the default) takes rates from `FIXED_RATES` ("USD=100000,EUR=92000",
units of fiat per BTC), so the gateway works offline. `RATE_PROVIDER=coingecko` asks
CoinGecko's public simple-price API (or any server answering its shape at
`RATE_PROVIDER_URL`), caches the answer for `RATE_CACHE_SECONDS` in the shared cache, and
raises RateUnavailable when it cannot be reached in `RATE_PROVIDER_TIMEOUT` seconds.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)

MSAT_PER_BTC = 10**11
FIAT_CURRENCIES = ("USD", "EUR")


class RateUnavailable(Exception):
    """No usable exchange rate right now (provider down, slow, or answering nonsense)."""


@dataclass(frozen=True)
class Quote:
    """What an amount costs in sats, and the rate it was converted at."""

    sats: int
    rate: Decimal | None  # units of fiat per BTC; None for SAT amounts
    source: str


def sats_for(amount: Decimal, currency: str) -> Quote:
    """The whole number of sats an `amount` of `currency` costs, rounded up."""
    if currency == "SAT":
        return Quote(sats=int(amount), rate=None, source="")
    rate, source = get_rate(currency)
    return Quote(sats=fiat_to_sats(amount, rate), rate=rate, source=source)


def fiat_to_sats(amount: Decimal, rate: Decimal) -> int:
    """ceil(amount * 10^11 / rate) msat, then up to whole sats, with exact arithmetic."""
    msat = Fraction(amount) * MSAT_PER_BTC / Fraction(rate)
    whole_msat = -(-msat.numerator // msat.denominator)
    return -(-whole_msat // 1000)


RATE_PLACES = Decimal("0.00000001")  # the stored rate's precision: convert at what is stored
MAX_RATE = Decimal(10**15)


def get_rate(currency: str) -> tuple[Decimal, str]:
    provider = settings.RATE_PROVIDER
    if provider == "fixed":
        rate, source = _fixed_rates()[currency], "fixed"
    elif provider == "coingecko":
        rate, source = _coingecko_rates()[currency], "coingecko"
    else:
        raise RateUnavailable(f"RATE_PROVIDER must be 'fixed' or 'coingecko', not {provider!r}")
    rate = rate.quantize(RATE_PLACES)
    if not 0 < rate < MAX_RATE:
        raise RateUnavailable(f"the {currency} rate {rate} from {source} is out of range")
    return rate, source


def _fixed_rates() -> dict[str, Decimal]:
    rates = {}
    for item in settings.FIXED_RATES.split(","):
        code, _, value = item.partition("=")
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            raise RateUnavailable(f"FIXED_RATES has a bad rate for {code.strip()}") from None
        rates[code.strip().upper()] = rate
    missing = [c for c in FIAT_CURRENCIES if not rates.get(c, 0) > 0]
    if missing:
        raise RateUnavailable(f"FIXED_RATES has no positive rate for {', '.join(missing)}")
    return rates


CACHE_KEY = "checkout:rates:coingecko"


def _coingecko_rates() -> dict[str, Decimal]:
    cached = cache.get(CACHE_KEY)
    if cached is not None:
        return {code: Decimal(value) for code, value in cached.items()}
    rates = _fetch_coingecko()
    cache.set(
        CACHE_KEY,
        {code: str(value) for code, value in rates.items()},
        timeout=settings.RATE_CACHE_SECONDS,
    )
    return rates


def _fetch_coingecko() -> dict[str, Decimal]:
    query = urllib.parse.urlencode(
        {"ids": "bitcoin", "vs_currencies": ",".join(c.lower() for c in FIAT_CURRENCIES)}
    )
    url = f"{settings.RATE_PROVIDER_URL}?{query}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=settings.RATE_PROVIDER_TIMEOUT) as response:
            # parse_float keeps the rate exact: 97123.45 must not become a binary float.
            body = json.loads(response.read(65536), parse_float=Decimal)
        prices = body["bitcoin"]
        rates = {code: Decimal(prices[code.lower()]) for code in FIAT_CURRENCIES}
    except (OSError, ValueError, KeyError, TypeError, InvalidOperation) as exc:
        log.warning("exchange rates from %s unavailable: %s", url, exc)
        raise RateUnavailable(f"the exchange-rate provider did not answer usably: {exc}") from exc
    if not all(rate > 0 for rate in rates.values()):
        raise RateUnavailable("the exchange-rate provider answered a rate that is not positive")
    return rates
