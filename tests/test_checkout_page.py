"""The hosted checkout page in a real headless Chromium (Debian's, driven by Playwright).

The app is served by pytest-django's live server; there is no Celery worker here, so where a
test pays, it applies the node's settlement in-process, as the watcher would.
"""

import subprocess

import pytest
from playwright.sync_api import expect

from checkout.models import CheckoutInvoice, Merchant, Product
from lightning import services
from lightning.backends import get_backend
from lightning.models import DevNodeInvoice

from .browser_support import DESKTOP, PHONE, chromium
from .browser_support import screenshot as save_screenshot
from .processes import wait_for
from .test_checkout_page_status import expire, make_checkout, pay

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The phone's width is called MOBILE here (the name other page tests import).
MOBILE = PHONE


@pytest.fixture(scope="module")
def browser(django_db_setup):
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, live_server, settings):
    settings.DEV_MODE = True
    context = browser.new_context(viewport=DESKTOP, device_scale_factor=2)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def open_checkout(page, live_server, checkout):
    page.goto(f"{live_server.url}/checkout/{checkout.public_id}")
    return page


def screenshot(page, name):
    """Save the page at a desktop's and a phone's width (tests/browser_support.py: where)."""
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        save_screenshot(page, f"checkout-{name}")
    page.set_viewport_size(DESKTOP)


def test_qr_code_decodes_to_the_lightning_uri_of_the_invoice(page, live_server, tmp_path):
    checkout = make_checkout()
    open_checkout(page, live_server, checkout)
    image = tmp_path / "qr.png"
    page.locator(".qr svg").screenshot(path=str(image))
    decoded = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert decoded == "lightning:" + checkout.invoice.bolt11.upper()
    assert page.locator("#open-wallet").get_attribute("href") == (
        "lightning:" + checkout.invoice.bolt11
    )
    screenshot(page, "unpaid")


def test_page_turns_paid_without_a_reload_and_offers_the_redirect(page, live_server):
    checkout = make_checkout(redirect_url="https://shop.example/thanks")
    open_checkout(page, live_server, checkout)
    expect(page.locator("#status")).to_have_text("Waiting for payment")
    page.evaluate("window.__notReloaded = true")
    page.route("https://shop.example/**", lambda route: route.fulfill(body="back at the shop"))

    pay(checkout)

    expect(page.locator("#status")).to_have_text("Paid")
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(page.locator("#state-unpaid")).to_be_hidden()
    assert page.evaluate("window.__notReloaded") is True
    continue_link = page.get_by_role("link", name="Continue")
    expect(continue_link).to_have_attribute("href", "https://shop.example/thanks")
    # Stay, for the screenshot; otherwise the page follows the link by itself.
    expect(page.locator("#redirect-note")).to_contain_text("Taking you back to the shop")
    page.get_by_role("button", name="Stay on this page").click()
    expect(page.get_by_role("button", name="Stay on this page")).to_be_hidden()
    expect(page.locator("#redirect-note")).to_be_empty()
    screenshot(page, "paid")


def test_page_follows_the_redirect_after_payment(page, live_server):
    checkout = make_checkout(redirect_url="https://shop.example/thanks?order=7")
    page.route("https://shop.example/**", lambda route: route.fulfill(body="back at the shop"))
    open_checkout(page, live_server, checkout)
    pay(checkout)
    page.wait_for_url("https://shop.example/thanks?order=7")


def test_dev_wallet_button_pays_and_the_page_turns_paid(page, live_server):
    checkout = make_checkout()
    open_checkout(page, live_server, checkout)
    page.get_by_role("button", name="Pay with the dev wallet").click()

    # The node settled it; the watcher (run here in-process) records the payment.
    def settled():
        return DevNodeInvoice.objects.filter(
            payment_hash=checkout.invoice.payment_hash, state=DevNodeInvoice.State.SETTLED
        ).exists()

    wait_for(settled, 10, "the dev wallet payment")
    backend = get_backend()
    services.apply_settlements([backend.lookup_invoice(checkout.invoice.payment_hash)])
    expect(page.locator("#status")).to_have_text("Paid")


def test_an_invoice_that_expires_while_open_shows_expired(page, live_server):
    checkout = make_checkout()
    open_checkout(page, live_server, checkout)
    expect(page.locator("#status")).to_have_text("Waiting for payment")
    expire(checkout)
    expect(page.locator("#status")).to_have_text("Expired")
    expect(page.get_by_role("heading", name="This invoice has expired")).to_be_visible()
    expect(page.locator(".qr")).to_be_hidden()


def test_an_expired_product_checkout_offers_to_start_again(page, live_server):
    merchant = Merchant.objects.create(name="Corner Café")
    product = Product.objects.create(
        merchant=merchant, name="Espresso beans 250 g", price="12.50", currency="USD"
    )
    checkout = make_checkout(merchant, product=product, description="Espresso beans 250 g")
    expire(checkout)
    open_checkout(page, live_server, checkout)
    expect(page.locator("#status")).to_have_text("Expired")
    expect(page.get_by_role("button", name="Start again")).to_be_visible()
    screenshot(page, "expired")


def test_start_again_makes_a_new_checkout_of_the_product_and_opens_it(page, live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    merchant = Merchant.objects.create(name="Corner Café")
    product = Product.objects.create(
        merchant=merchant, name="Sticker pack", price="2100", currency="SAT"
    )
    checkout = make_checkout(
        merchant, product=product, quantity=2, sats=4200, amount="4200", currency="SAT"
    )
    expire(checkout)
    open_checkout(page, live_server, checkout)
    page.get_by_role("button", name="Start again").click()

    page.wait_for_url(lambda url: checkout.public_id not in url)
    expect(page.locator("#status")).to_have_text("Waiting for payment")
    fresh = CheckoutInvoice.objects.exclude(pk=checkout.pk).get()
    assert page.url == f"{live_server.url}/checkout/{fresh.public_id}"
    assert (fresh.product, fresh.quantity, fresh.sats_amount) == (product, 2, 4200)


def test_copy_button_copies_the_invoice(page, live_server):
    checkout = make_checkout()
    open_checkout(page, live_server, checkout)
    page.get_by_role("button", name="Copy invoice").click()
    expect(page.locator("#feedback")).to_contain_text("Invoice copied")
    assert page.evaluate("navigator.clipboard.readText()") == checkout.invoice.bolt11


def test_keyboard_reaches_the_wallet_link_and_the_buttons(page, live_server):
    checkout = make_checkout()
    open_checkout(page, live_server, checkout)
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    for wanted in ("open-wallet", "copy-invoice", "dev-pay"):
        assert wanted in reached, reached
    # A focused button works with the keyboard.
    page.focus("#copy-invoice")
    page.keyboard.press("Enter")
    expect(page.locator("#feedback")).to_contain_text("Invoice copied")


def test_unknown_checkout_is_a_404_page(page, live_server):
    response = page.goto(f"{live_server.url}/checkout/inv_nothing")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Checkout not found")).to_be_visible()
