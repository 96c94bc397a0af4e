"""An agent that sells a paid proxy of this gateway as a capability sees each paid call
in its stats: requests and revenue come from the L402 payments themselves. Only an agent
of the merchant that owns the proxy earns from it, whoever else names it."""

import pytest
from django.test import Client

from checkout.services import create_merchant
from lightning import services as lightning
from lightning.backends import get_backend

from .test_agents_market import publish
from .test_agents_support import (  # noqa: F401 (fixture)
    Signer,
    api,
    register,
    verified_agent,
    verify,
)

pytestmark = pytest.mark.django_db


def paid_call(client, url):
    challenge = client.get(url)
    assert challenge.status_code == 402
    invoice = challenge.json()["invoice"]
    payment = get_backend().pay_invoice(invoice)
    lightning.apply_settlements([get_backend().lookup_invoice(payment.payment_hash)])


def test_paid_proxy_calls_count_only_for_the_proxy_owners_agent(api, upstream, settings):  # noqa: F811
    _, key = create_merchant("Weather shop")
    web = Client()
    created = web.post(
        "/api/proxy",
        {"name": "Weather", "targetBaseUrl": upstream.url, "defaultPriceSats": 21},
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert created.status_code == 201, created.content
    proxy_id = created.json()["proxyId"]
    seller = Signer()  # the shop's own agent: its key proved it for the shop
    register(api, seller, HTTP_X_API_KEY=key)
    verify(api, seller, HTTP_X_API_KEY=key)
    publish(api, seller, l402Endpoint=f"{settings.PUBLIC_BASE_URL}/l402/proxy/{proxy_id}")
    bystander = verified_agent(api, name="Bystander")
    publish(api, bystander, service_id="other", l402Endpoint="/l402/proxy/someone-else")
    # An agent that is not the shop's names the shop's proxy as its own capability (it is
    # the newest one that covers the route).
    squatter = verified_agent(api, name="Squatter")
    publish(api, squatter, service_id="weather", l402Endpoint=f"/l402/proxy/{proxy_id}")
    _, other_key = create_merchant("Other shop")
    other_shops_agent = Signer()
    register(api, other_shops_agent, name="Other shop's agent", HTTP_X_API_KEY=other_key)
    verify(api, other_shops_agent, HTTP_X_API_KEY=other_key)
    publish(api, other_shops_agent, l402Endpoint=f"/l402/proxy/{proxy_id}/forecast")

    for _ in range(2):
        paid_call(web, f"/l402/proxy/{proxy_id}/forecast")

    stats = api.get(f"/api/agents/{seller.pubkey}/stats").json()
    assert stats["totalRequests"] == 2 and stats["totalRevenueSats"] == 42
    for other in (bystander, squatter, other_shops_agent):
        other = api.get(f"/api/agents/{other.pubkey}/stats").json()
        assert other["totalRequests"] == 0 and other["totalRevenueSats"] == 0
