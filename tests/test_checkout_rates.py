"""Fiat to sats: exact integer conversion rounded up, the fixed provider, and the HTTP
provider against a real HTTP server on loopback (answering, caching, down, too slow)."""

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache

from checkout import rates
from checkout.models import CheckoutInvoice
from checkout.services import create_merchant
from lightning.models import Invoice

from .test_checkout_api import INVOICES, Api, assert_problem


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize(
    "amount, rate, sats",
    [
        ("0.01", "100000", 10),  # exactly 10 sats
        ("1", "3", 33_333_334),  # 33,333,333.33... sats: up
        ("0.07", "7", 1_000_000),  # exact; 0.07 / 7 * 1e8 in floats is 1000000.0000000001
        ("12.34", "97123.45", 12_706),  # 12,705.5... sats: up
        ("0.01", "100000000", 1),  # 0.01 sat: never 0, always up to a whole sat
        ("0.01", "99999999.99999999", 1),
        ("99999999.99", "1", 9_999_999_999_000_000),
    ],
)
def test_conversion_is_exact_and_rounds_up(amount, rate, sats):
    assert rates.fiat_to_sats(Decimal(amount), Decimal(rate)) == sats


def test_msat_are_rounded_up_before_sats():
    # 1 USD at 3 USD/BTC is 33,333,333,333.33 msat -> 33,333,333,334 msat -> 33,333,334 sat.
    assert rates.fiat_to_sats(Decimal("1"), Decimal("3")) == 33_333_334
    # 3 USD at 3 USD/BTC is exactly 1 BTC: nothing to round.
    assert rates.fiat_to_sats(Decimal("3"), Decimal("3")) == 100_000_000


def test_fixed_rates(settings):
    settings.RATE_PROVIDER = "fixed"
    settings.FIXED_RATES = "USD=65000.5, EUR=60000"
    assert rates.sats_for(Decimal("1"), "USD") == rates.Quote(
        sats=1539, rate=Decimal("65000.5"), source="fixed"
    )
    assert rates.sats_for(Decimal("2100"), "SAT") == rates.Quote(sats=2100, rate=None, source="")
    settings.FIXED_RATES = "USD=0,EUR=60000"
    with pytest.raises(rates.RateUnavailable):
        rates.get_rate("USD")


class Provider:
    """A CoinGecko-shaped price server on loopback."""

    def __init__(self, body=None):
        self.body = body or {"bitcoin": {"usd": 97123.45, "eur": 90000.5}}
        # While set, requests get no answer until `close` (a provider that hangs).
        self.hang = False
        self.closed = threading.Event()
        self.hits = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                provider.hits += 1
                provider.last_path = self.path
                if provider.hang:
                    provider.closed.wait(60)
                    return
                payload = json.dumps(provider.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v3/simple/price"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider(settings):
    server = Provider()
    settings.RATE_PROVIDER = "coingecko"
    settings.RATE_PROVIDER_URL = server.url
    settings.RATE_PROVIDER_TIMEOUT = 2.0
    yield server
    server.close()


@pytest.fixture
def api(db):
    _, key = create_merchant("Rate shop")
    return Api(key)


def test_http_provider_rates_are_used_exactly_and_stored(provider, api):
    response = api.post(INVOICES, {"amount": "12.34", "currency": "USD"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["satsAmount"] == 12_706  # ceil(12.34e8 / 97123.45)
    assert body["rate"] == "97123.45" and body["rateSource"] == "coingecko"
    checkout = CheckoutInvoice.objects.get()
    assert checkout.rate == Decimal("97123.45") and checkout.rate_source == "coingecko"
    assert checkout.invoice.amount_msat == 12_706_000
    assert "ids=bitcoin" in provider.last_path and "vs_currencies=usd%2Ceur" in provider.last_path


def test_http_provider_answers_are_cached(provider, api):
    for currency in ("USD", "EUR", "USD"):
        assert api.post(INVOICES, {"amount": "1", "currency": currency}).status_code == 201
    assert provider.hits == 1
    cache.clear()
    assert api.post(INVOICES, {"amount": "1", "currency": "EUR"}).status_code == 201
    assert provider.hits == 2


def test_sats_need_no_rate(settings, api):
    settings.RATE_PROVIDER = "coingecko"
    settings.RATE_PROVIDER_URL = "http://127.0.0.1:9/never"
    assert api.post(INVOICES, {"amount": "500", "currency": "SAT"}).status_code == 201


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_provider_is_a_503_and_writes_nothing(settings, api):
    settings.RATE_PROVIDER = "coingecko"
    settings.RATE_PROVIDER_URL = f"http://127.0.0.1:{_free_port()}/price"
    response = api.post(INVOICES, {"amount": "5", "currency": "USD"})
    problem = assert_problem(response, 503, "rate_unavailable")
    assert "USD" in problem["detail"]
    assert CheckoutInvoice.objects.count() == 0 and Invoice.objects.count() == 0


def test_a_slow_provider_times_out_as_a_503(provider, settings, api):
    provider.hang = True  # answers only after the test: however loaded the machine
    settings.RATE_PROVIDER_TIMEOUT = 0.2
    assert_problem(api.post(INVOICES, {"amount": "5", "currency": "USD"}), 503, "rate_unavailable")
    assert CheckoutInvoice.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"bitcoin": {"usd": 97000}},  # no EUR
        {"bitcoin": {"usd": "lots", "eur": 1}},
        {"bitcoin": {"usd": -1, "eur": 1}},
        {"error": "rate limited"},
        ["not", "an", "object"],
    ],
)
def test_a_provider_answering_nonsense_is_a_503(provider, api, body):
    provider.body = body
    assert_problem(api.post(INVOICES, {"amount": "5", "currency": "USD"}), 503, "rate_unavailable")
    assert CheckoutInvoice.objects.count() == 0
