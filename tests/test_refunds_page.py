"""The buyer's refund page in a real headless Chromium (Debian's, driven by Playwright):
its QR code decodes to the refund's LNURL-withdraw, and a pasted invoice is paid."""

import subprocess
from decimal import Decimal

import bech32
import pytest
from playwright.sync_api import expect

from checkout.services import create_checkout_invoice, create_merchant
from config.celery import app as celery_app
from lightning.backends import get_backend
from refunds import services as refunds
from refunds.serializers import withdraw_lnurl
from wallets import services as wallets

from .test_checkout_page import MOBILE, browser, page, screenshot  # noqa: F401 (fixtures)
from .test_checkout_page_status import pay

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _eager_celery(monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


def refund_link(settings, live_server, sats=3000):
    settings.PUBLIC_BASE_URL = live_server.url
    merchant, _ = create_merchant("Corner Café")
    checkout, _ = create_checkout_invoice(
        merchant, {"amount": Decimal(5000), "currency": "SAT", "description": "Beans"}
    )
    pay(checkout)
    payment = refunds.payment_of_checkout(merchant, checkout)
    assert wallets.wallet_for(merchant).balance_msat == 5_000_000
    return refunds.create_refund(merchant, payment, amount_sats=sats, reason="Beans ran out")


def test_the_qr_code_is_the_lnurl_withdraw_and_a_pasted_invoice_is_paid(
    page,  # noqa: F811
    live_server,
    settings,
    tmp_path,
):
    refund = refund_link(settings, live_server)
    page.set_viewport_size(MOBILE)
    page.goto(f"{live_server.url}/refund/{refund.claim_token}")
    expect(page.locator("#amount-sats")).to_have_text("3,000 sats")
    expect(page.locator("#reason")).to_have_text("Beans ran out")
    # Nothing is wider than a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    image = tmp_path / "qr.png"
    page.locator(".qr svg").screenshot(path=str(image))
    decoded = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert decoded == "lightning:" + withdraw_lnurl(refund).upper()
    # The reference bech32 decoder reads the LNURL to the withdraw request's URL.
    hrp, words = bech32.bech32_decode(decoded.removeprefix("lightning:").lower())
    url = bytes(bech32.convertbits(words, 5, 8, False)).decode()
    assert hrp == "lnurl" and url == f"{live_server.url}/lnurlw/{refund.claim_token}"
    screenshot(page, "refund-claimable")

    page.fill("#invoice", get_backend().create_invoice(2000 * 1000, "wrong", 600).bolt11)
    page.click("#claim")
    expect(page.locator("#error")).to_contain_text("exactly 3,000 sats")
    page.fill("#invoice", get_backend().create_invoice(3000 * 1000, "my wallet", 600).bolt11)
    page.click("#claim")

    expect(page.locator("#status")).to_have_text("Refund sent")
    refund.refresh_from_db()
    assert refund.state == "completed"
    expect(page.locator("#preimage")).to_have_text(refund.payout.preimage)
    screenshot(page, "refund-completed")
