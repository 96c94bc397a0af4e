"""The merchant site in Debian's Chromium, at a phone's and a desktop's width: a shop owner
signs in, reads the charts, finds invoices and exports them, refunds one, makes a product
and its payment link (which opens a payable checkout), makes an API key, and brands the
checkout. Screenshots of each page are saved (tests/browser_support.py says where)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from checkout.models import ApiKey, CheckoutInvoice, Product
from checkout.services import create_merchant, create_product
from checkout.staff import create_merchant_user
from lightning.models import Invoice
from refunds.models import Refund

from .browser_support import DESKTOP, PHONE, browser_page, chromium, overflows_horizontally
from .browser_support import screenshot as save_screenshot
from .test_dashboard import sell

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long passphrase 42"
LONG_EMAIL = "a.very.long.buyer.address.that.goes.on@subdomain.of.some-example-shop.com"


@pytest.fixture(scope="module")
def browser(django_db_setup):
    with chromium() as browser:
        yield browser


@pytest.fixture
def shop(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    settings.LIGHTNING_BACKEND = "devnode"
    merchant, _ = create_merchant("Corner Café")
    create_merchant_user("owner", merchant, PASSWORD)
    return merchant


def sign_in(page, base):
    page.goto(f"{base}/dashboard/")
    expect(page.get_by_role("heading", name="Sign in to your shop")).to_be_visible()
    page.get_by_label("User name").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="How the shop is doing")).to_be_visible()


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_owner_reads_the_charts_finds_exports_and_refunds_an_invoice(
    browser, live_server, shop, width
):
    viewport = {"desktop": DESKTOP, "phone": PHONE}[width]
    today = timezone.localdate().isoformat()
    sold = [sell(shop, 2100, email=LONG_EMAIL, user_ref="order-1"), sell(shop, 5000)]
    earlier = sell(shop, 1000, user_ref="order-0")
    Invoice.objects.filter(pk=earlier.invoice_id).update(paid_at=timezone.now() - timedelta(days=2))
    sell(shop, 300, paid=False, user_ref="order-2")

    with browser_page(browser, viewport, origin=live_server.url) as page:
        sign_in(page, live_server.url)
        bar = page.locator(f'figure[data-unit="sats"] rect.bar[data-day="{today}"]')
        expect(bar).to_have_attribute("aria-label", f"{timezone.localdate():%a %d %b}: 7,100 sats")
        assert bar.bounding_box()["height"] > 20  # a bar one can see, not a sliver
        expect(page.locator("#total-sats")).to_have_text("8,100 sats")
        page.get_by_role("link", name="7 days").click()
        expect(page.locator('figure[data-unit="sats"] rect.bar')).to_have_count(7)
        assert not overflows_horizontally(page)
        save_screenshot(page, "dashboard-home")

        page.get_by_role("link", name="Invoices", exact=True).click()
        expect(page.locator("#result-count")).to_have_text("4 invoices")
        expect(page.get_by_text(LONG_EMAIL)).to_be_visible()
        assert not overflows_horizontally(page)
        save_screenshot(page, "dashboard-invoices")

        page.get_by_label("Status").select_option("paid")
        page.get_by_label("Reference").fill("order-")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#result-count")).to_have_text("2 invoices")
        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").click()
        rows = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
        assert sorted(r["reference"] for r in rows) == ["order-0", "order-1"]
        assert {r["status"] for r in rows} == {"paid"}

        page.locator(f'a[href="/dashboard/invoices/{sold[0].public_id}"]').click()
        expect(page.locator("#invoice-status")).to_have_text("paid")
        expect(page.locator("#timeline")).to_contain_text("Paid")
        page.get_by_text("Lightning invoice (BOLT11)").click()
        assert not overflows_horizontally(page)
        page.get_by_label("Amount (sats)").fill("500")
        page.get_by_label("Reason").fill("one cup short")
        page.get_by_role("button", name="Refund").click()
        expect(page.get_by_role("status")).to_contain_text("created: claimable")
        expect(page.locator("#refundable")).to_have_text("1,600 sats")
        expect(page.locator("#timeline")).to_contain_text("Refund of 500 sats")
        assert Refund.objects.get().amount_msat == 500_000
        save_screenshot(page, "dashboard-invoice")


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_owner_makes_a_product_whose_payment_link_opens_a_payable_checkout(
    browser, live_server, shop, width
):
    viewport = {"desktop": DESKTOP, "phone": PHONE}[width]
    create_product(
        shop,
        name="Broken picture",
        price=Decimal(100),
        currency="SAT",
        image_url=f"{live_server.url}/static/no-such-image.png",
    )
    with browser_page(browser, viewport, origin=live_server.url) as page:
        sign_in(page, live_server.url)
        page.get_by_role("link", name="Products", exact=True).click()
        broken = page.locator('article:has-text("Broken picture") img')
        expect(broken).to_be_hidden()  # no broken-image frame: the letter shows instead
        expect(page.locator('article:has-text("Broken picture") .thumb-fallback')).to_be_visible()

        page.get_by_role("link", name="New product").click()
        page.get_by_label("Name").fill("Mug")
        page.get_by_label("Price").fill("2500")
        page.get_by_label("Currency").select_option("SAT")
        page.get_by_label("Image URL").fill(f"{live_server.url}/static/checkout/favicon.svg")
        preview = page.get_by_alt_text("Image preview")
        expect(preview).to_be_visible()
        page.wait_for_function("document.querySelector('#image-preview img').naturalWidth > 0")
        page.get_by_role("button", name="Create product").click()
        expect(page.get_by_role("status")).to_contain_text("Product “Mug” created.")
        product = Product.objects.get(name="Mug")
        link = f"{live_server.url}/pay/{product.public_id}"
        expect(page.locator("#payment-link")).to_have_value(link)
        page.get_by_role("button", name="Copy link").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == link
        assert link in page.locator("#button-html").input_value()
        assert not overflows_horizontally(page)
        save_screenshot(page, "dashboard-product")

        page.goto(link)  # what a buyer who clicks the link gets
        expect(page.locator("#status")).to_be_visible()
        checkout = CheckoutInvoice.objects.get(product=product)
        assert page.url == f"{live_server.url}/checkout/{checkout.public_id}"
        assert checkout.status == "unpaid" and checkout.sats_amount == 2500
        expect(page.locator("#open-wallet")).to_have_attribute(
            "href", f"lightning:{checkout.invoice.bolt11}"
        )


def test_the_owner_makes_and_copies_a_key_and_brands_the_checkout(browser, live_server, shop):
    for viewport, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
        with browser_page(browser, viewport, origin=live_server.url) as page:
            sign_in(page, live_server.url)
            page.get_by_role("link", name="API keys").click()
            page.get_by_label("Name").fill(f"Plugin on {name}")
            page.get_by_label("Kind").select_option("invoice")
            page.get_by_role("button", name="Create key").click()
            shown = page.locator("#new-key-value").input_value()
            page.get_by_role("button", name="Copy key").click()
            expect(page.get_by_role("button", name="Copied")).to_be_visible()
            assert page.evaluate("navigator.clipboard.readText()") == shown
            assert ApiKey.objects.filter(name=f"Plugin on {name}", kind="invoice").exists()
            assert not overflows_horizontally(page)
            save_screenshot(page, "dashboard-keys")

            page.get_by_role("link", name="Settings").click()
            page.get_by_label("Brand colour").fill("#1a73e8")
            page.get_by_label("Shop website").fill("https://corner.example")
            page.get_by_role("button", name="Save settings").click()
            expect(page.get_by_role("status")).to_contain_text("Settings saved.")
            expect(page.locator("#brand-swatch")).to_have_css(
                "background-color", "rgb(26, 115, 232)"
            )
            assert not overflows_horizontally(page)
            save_screenshot(page, "dashboard-settings")
    shop.refresh_from_db()
    assert (shop.brand_colour, shop.website_url) == ("#1a73e8", "https://corner.example")
