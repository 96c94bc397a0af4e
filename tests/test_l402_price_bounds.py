"""Prices are money: no price above 21 million BTC is saved (a 400 naming the field), and a
price stored out of range anyway (before the bound existed) never makes a public request
a 500."""

from decimal import Decimal

import pytest
from django.test import Client

from checkout.services import create_merchant
from config.money import MAX_SATS
from l402.models import PaidContent, Proxy, ProxyEndpoint
from lightning.models import Invoice

pytestmark = pytest.mark.django_db

TOO_MUCH = [MAX_SATS + 1, 10**16, 2**63 - 1, 2**64]
PROBLEM = "application/problem+json"


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture
def shop():
    merchant, key = create_merchant("Shop")
    return merchant, {"HTTP_X_API_KEY": key}


def post(client, url, payload, key):
    return client.post(url, payload, content_type="application/json", **key)


def assert_refused(response, field):
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == PROBLEM
    assert field in response.json()["errors"], response.json()


def test_prices_above_all_bitcoin_are_refused_when_saved(client, shop, upstream):
    _, key = shop
    proxy = post(
        client,
        "/api/proxy",
        {"name": "p", "targetBaseUrl": upstream.url, "defaultPriceSats": MAX_SATS},
        key,
    )
    assert proxy.status_code == 201, proxy.content  # the bound itself is a price
    proxy_url = f"/api/proxy/{proxy.json()['proxyId']}"
    for price in TOO_MUCH:
        assert_refused(
            post(
                client,
                "/api/l402/content",
                {"slug": "x", "title": "t", "body": "b", "priceSats": price},
                key,
            ),
            "priceSats",
        )
        assert_refused(
            post(
                client,
                "/api/proxy",
                {"name": "p", "targetBaseUrl": upstream.url, "defaultPriceSats": price},
                key,
            ),
            "defaultPriceSats",
        )
        assert_refused(
            client.put(
                proxy_url, {"defaultPriceSats": price}, content_type="application/json", **key
            ),
            "defaultPriceSats",
        )
        assert_refused(
            post(
                client,
                f"{proxy_url}/manifest/endpoints",
                {"endpointId": "e", "path": "/e", "httpMethod": "GET", "basePriceSats": price},
                key,
            ),
            "basePriceSats",
        )
        assert_refused(
            post(client, "/api/l402/challenges", {"resource": "r", "priceSats": price}, key),
            "priceSats",
        )
    assert not PaidContent.objects.exists() and not ProxyEndpoint.objects.exists()
    assert Proxy.objects.get().default_price_sats == MAX_SATS


def test_the_largest_price_sells(client, shop, upstream):
    _, key = shop
    proxy = post(
        client,
        "/api/proxy",
        {"name": "p", "targetBaseUrl": upstream.url, "defaultPriceSats": MAX_SATS},
        key,
    ).json()
    challenge = client.get(f"/l402/proxy/{proxy['proxyId']}/x")
    assert challenge.status_code == 402 and challenge.json()["amountSats"] == MAX_SATS
    bought = post(
        client,
        "/api/invoice",
        {"proxyId": proxy["proxyId"], "method": "GET", "path": "/x"},
        {},
    )
    assert bought.status_code == 201, bought.content
    assert bought.json()["value"] == MAX_SATS * 1000
    assert Decimal(bought.json()["price"]) == Decimal(21_000_000 * 100_000)  # at 100000 USD


def test_a_bundle_cannot_add_up_past_the_bound(client, shop):
    merchant, _ = shop
    for slug in ("a", "b"):
        PaidContent.objects.create(merchant=merchant, slug=slug, title=slug, price_sats=MAX_SATS)
    invoices = Invoice.objects.count()
    response = post(client, "/api/l402/content/bundle", {"slugs": ["a", "b"]}, {})
    assert_refused(response, "slugs")
    assert Invoice.objects.count() == invoices


@pytest.mark.parametrize("price", [10**16, 2**63 - 1])
def test_a_stored_price_out_of_range_is_a_clear_503_on_every_public_path(
    client, shop, upstream, price
):
    """Rows written before the bound (or around the API) with an impossible price."""
    merchant, _ = shop
    PaidContent.objects.create(merchant=merchant, slug="gold", title="Gold", price_sats=price)
    proxy = Proxy.objects.create(
        merchant=merchant,
        proxy_id="dear-1",
        name="Dear",
        target_base_url=upstream.url,
        default_price_sats=price,
    )
    cheap = Proxy.objects.create(
        merchant=merchant,
        proxy_id="cheap-1",
        name="Cheap",
        target_base_url=upstream.url,
        default_price_sats=5,
    )
    ProxyEndpoint.objects.create(
        proxy=cheap, endpoint_id="gold", path="/gold", http_method="GET", base_price_sats=price
    )
    invoices = Invoice.objects.count()
    for response in (
        client.get("/api/l402/content/gold"),
        post(client, "/api/l402/content/bundle", {"slugs": ["gold"]}, {}),
        client.get(f"/l402/proxy/{proxy.proxy_id}/anything"),
        client.post(f"/l402/proxy/{proxy.proxy_id}/anything", b"{}", "application/json"),
        client.get(f"/l402/proxy/{cheap.proxy_id}/gold"),
        post(
            client,
            "/api/invoice",
            {"proxyId": proxy.proxy_id, "method": "GET", "path": "/x"},
            {},
        ),
        post(
            client,
            "/api/invoice",
            {"proxyId": cheap.proxy_id, "method": "GET", "path": "/gold"},
            {},
        ),
    ):
        assert response.status_code == 503, (response.request["PATH_INFO"], response.content)
        assert response["Content-Type"] == PROBLEM
        assert response.json()["error"] == "price_out_of_range"
    assert Invoice.objects.count() == invoices
    assert client.get(f"/l402/proxy/{cheap.proxy_id}/other").status_code == 402  # still sells
    assert upstream.seen == []
