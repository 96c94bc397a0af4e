"""README's sample webhook handler, run as written against the webhooks the gateway really
sends: it ships an order only for a payment of that order's own invoice, in full."""

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from checkout.services import create_merchant
from lightning import services as lightning
from lightning.backends import get_backend
from webhooks import services

from .test_webhooks_checkout import _private_targets, send_leased  # noqa: F401

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass
class Order:
    currency: str
    total: Decimal


@dataclass
class Request:
    body: bytes
    headers: dict


def readme_handler(secret: str, orders: dict, shipped: list):
    """`receive` from README's Python block that defines it, with the shop's parts it leaves
    to the reader: its order book (by invoiceId), its duplicate check and its shipping."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (code,) = [block for block in blocks if "def receive(request)" in block]
    assert '"whsec_..."' in code
    seen = set()

    def already_seen(event_id):
        if event_id in seen:
            return True
        seen.add(event_id)
        return False

    namespace = {
        "HttpResponse": lambda status: status,
        "already_seen": already_seen,
        "order_with_invoice": orders.get,
        "mark_order_paid": shipped.append,
    }
    exec(code.replace('"whsec_..."', repr(secret)), namespace)
    return namespace["receive"]


def pay(invoice: dict) -> None:
    get_backend().pay_invoice(invoice["lightningInvoice"])
    lightning.apply_settlements([get_backend().lookup_invoice(invoice["paymentHash"])])


def test_the_readme_handler_ships_only_the_order_whose_invoice_was_paid_in_full(
    receiver,
):
    merchant, key = create_merchant("Big shop")
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=key)
    endpoint = services.create_endpoint(merchant, receiver.url, ["payment.completed"])

    def create(body):
        response = api.post("/api/checkout/invoices", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    big = create({"amount": "1000.00", "currency": "USD", "userRef": "order-1000"})
    # The shop's own books: what each invoice it created is for. One entry is wrong (the
    # invoice says $1 where the order costs $2,000): the amount check catches it.
    short = create({"amount": "1.00", "currency": "USD", "userRef": "order-2000"})
    big_order, short_order = Order("USD", Decimal("1000.00")), Order("USD", Decimal("2000.00"))
    orders = {big["invoiceId"]: big_order, short["invoiceId"]: short_order}
    shipped = []
    receive = readme_handler(endpoint.secret, orders, shipped)

    product = api.post(
        "/api/checkout/products",
        {"name": "Sticker", "price": "1.00", "currency": "USD"},
        format="json",
    ).json()
    cheap = APIClient().post(
        f"/api/checkout/products/{product['productId']}/checkout", {}, format="json"
    )
    assert cheap.status_code == 201, cheap.content

    for invoice in (cheap.json(), short, big):
        pay(invoice)
    send_leased()
    assert len(receiver.requests) == 3
    for received in receiver.requests:
        assert receive(Request(received.body, received.headers)) == 200
        assert receive(Request(received.body, received.headers)) == 200  # a redelivery

    assert shipped == [big_order]
    forged = receiver.requests[-1]
    assert receive(Request(forged.body.replace(b"1000.00", b"1.00"), forged.headers)) == 400
