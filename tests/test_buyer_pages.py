"""The buyer's pages as a buyer sees them (issue 15): the receipt of a paid checkout, the
pages in the buyer's language with amounts and dates formatted for it, the merchant's
branding, the way back to the shop from an expired invoice, product images that fail to
load, and the Shopify payment page with the checkout page's invoice component.

In Debian's Chromium (tests/browser_support.py), at a phone's and a desktop's width, with a
screenshot of each page state in var/screenshots. The last tests need no browser: the
compiled catalogs (locale/*/LC_MESSAGES/django.mo) must match their .po files.
"""

import gettext
import hashlib
import io
import re
import subprocess
import time
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from django.conf import settings as django_settings
from django.test import Client
from playwright.sync_api import expect

from checkout.models import CheckoutInvoice, Merchant, Product
from checkout.pages import contrast_ratio, format_paid_at
from lightning.models import Invoice
from tests import test_shopify_support as support
from tests.browser_support import (
    DESKTOP,
    PHONE,
    browser_page,
    chromium,
    overflows_horizontally,
    screenshot,
)
from tests.test_checkout_page_status import expire, make_checkout, pay
from tests.test_shopify_orders import pay as pay_shopify
from tests.test_shopify_orders import start

fake_shopify = support.fake_shopify
local_cache = support.local_cache
merchant_and_key = support.merchant_and_key
store = support.store

WIDTHS = pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="32">'
    '<rect width="96" height="32" rx="6" fill="#1d3557"/>'
    '<text x="48" y="21" font-size="14" text-anchor="middle" fill="#fff">CAFÉ</text></svg>'
)
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


def text_of(locator) -> str:
    """The text as a person reads it: Babel's no-break spaces are spaces."""
    return re.sub(r"\s+", " ", locator.inner_text().replace("\u202f", " ")).strip()


@pytest.fixture(scope="module")
def browser(django_db_setup):
    with chromium() as browser:
        yield browser


def branded_merchant(**fields) -> Merchant:
    values = {
        "name": "Corner Café",
        "support_email": "help@corner.example",
        "logo_url": "https://cdn.corner.example/logo.svg",
        "website_url": "https://corner.example/shop",
    }
    values.update(fields)
    return Merchant.objects.create(**values)


def serve_the_logo(page):
    page.route(
        "https://cdn.corner.example/**",
        lambda route: route.fulfill(body=LOGO_SVG, content_type="image/svg+xml"),
    )


def open_page(page, live_server, checkout, query=""):
    return page.goto(f"{live_server.url}/checkout/{checkout.public_id}{query}")


def assert_receipt_shows(page, checkout):
    invoice = Invoice.objects.get(pk=checkout.invoice_id)
    receipt = page.locator(".receipt")
    expect(receipt).to_be_visible()
    expect(receipt.get_by_role("heading", name="Receipt")).to_be_visible()
    expect(receipt.locator(".receipt-merchant")).to_have_text("Corner Café")
    expect(receipt.locator("#support-email")).to_have_attribute(
        "href", "mailto:help@corner.example"
    )
    expect(receipt.locator("#receipt-item")).to_have_text("Two espressos")
    expect(receipt.locator("#receipt-quantity")).to_have_text("1")
    assert text_of(receipt.locator("#receipt-unit-price")) == "$12.50"
    assert text_of(receipt.locator("#receipt-fiat")) == "$12.50"
    assert text_of(receipt.locator("#receipt-sats")) == "21,000 sats"
    assert text_of(receipt.locator("#receipt-date")) == text_of_date(invoice)
    expect(receipt.locator("#receipt-invoice-id")).to_have_text(checkout.public_id)
    expect(receipt.locator("#receipt-payment-hash")).to_have_text(invoice.payment_hash)
    # The preimage shown is the one the database keeps, and it is the payment's proof.
    assert invoice.preimage
    expect(receipt.locator("#receipt-preimage")).to_have_text(invoice.preimage)
    assert hashlib.sha256(bytes.fromhex(invoice.preimage)).hexdigest() == invoice.payment_hash
    expect(receipt).to_contain_text("proof of payment")
    expect(page.get_by_role("button", name="Print receipt")).to_be_visible()


def text_of_date(invoice) -> str:
    expected = format_paid_at(invoice.paid_at, "en").replace("\u202f", " ")
    assert str(invoice.paid_at.year) in expected
    return re.sub(r"\s+", " ", expected)


# --- the receipt -------------------------------------------------------------------------


@WIDTHS
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_paid_checkout_shows_its_receipt(browser, live_server, viewport):
    checkout = make_checkout(branded_merchant())
    pay(checkout)
    with browser_page(browser, viewport) as page:
        serve_the_logo(page)
        open_page(page, live_server, checkout)
        expect(page.locator("#status")).to_have_text("Paid")
        assert_receipt_shows(page, checkout)
        logo = page.locator(".merchant .merchant-logo")
        expect(logo).to_be_visible()
        assert page.evaluate("document.querySelector('.merchant-logo').naturalWidth") > 0
        assert not overflows_horizontally(page)
        screenshot(page, "buyer-receipt")

        # On paper: the receipt, black on white, without buttons or footer.
        page.emulate_media(media="print")
        expect(page.locator(".receipt")).to_be_visible()
        expect(page.get_by_role("button", name="Print receipt")).to_be_hidden()
        expect(page.locator(".site-footer")).to_be_hidden()
        colours = page.evaluate(
            "[getComputedStyle(document.querySelector('#receipt-preimage')).color,"
            " getComputedStyle(document.body).backgroundColor]"
        )
        assert colours == ["rgb(0, 0, 0)", "rgb(255, 255, 255)"]
        screenshot(page, "buyer-receipt-print")


@WIDTHS
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_page_that_turns_paid_while_open_shows_the_receipt(browser, live_server, viewport):
    checkout = make_checkout(branded_merchant())
    with browser_page(browser, viewport) as page:
        serve_the_logo(page)
        open_page(page, live_server, checkout)
        expect(page.locator("#status")).to_have_text("Waiting for payment")
        expect(page.locator(".receipt")).to_have_count(0)
        page.evaluate("window.__notReloaded = true")

        pay(checkout)

        expect(page.locator("#status")).to_have_text("Paid")
        assert_receipt_shows(page, checkout)
        assert page.evaluate("window.__notReloaded") is True
        page.get_by_role("button", name="Print receipt").click()  # window.print, no error
        screenshot(page, "buyer-receipt-live")


# --- languages ---------------------------------------------------------------------------


@WIDTHS
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_german_browser_gets_german_and_the_picker_switches_to_french(
    browser, live_server, viewport
):
    checkout = make_checkout(branded_merchant())
    with browser_page(browser, viewport, locale="de-DE", origin=live_server.url) as page:
        serve_the_logo(page)
        response = open_page(page, live_server, checkout)
        assert response.headers["content-language"] == "de"
        assert page.evaluate("document.documentElement.lang") == "de"
        expect(page.locator("#status")).to_have_text("Warte auf Zahlung")
        assert text_of(page.locator("#amount-fiat")) == "12,50 $"
        assert text_of(page.locator("#amount-sats")) == "21.000 sats"
        expect(page.get_by_role("link", name="In Wallet öffnen")).to_be_visible()
        page.get_by_role("button", name="Rechnung kopieren").click()
        expect(page.locator("#feedback")).to_have_text(
            "Rechnung kopiert. Fügen Sie sie in Ihre Wallet ein."
        )
        assert page.evaluate("navigator.clipboard.readText()") == checkout.invoice.bolt11
        expect(page.locator(".site-footer")).to_contain_text("Datenschutz")
        assert not overflows_horizontally(page)
        screenshot(page, "buyer-de-unpaid")

        page.get_by_role("link", name="Français").click()
        expect(page.locator("#status")).to_have_text("En attente de paiement")
        assert page.evaluate("document.documentElement.lang") == "fr"
        assert text_of(page.locator("#amount-fiat")) == "12,50 $US"
        expect(page.get_by_role("link", name="Français")).to_have_attribute("aria-current", "true")
        # The choice sticks: the plain address, and a reload, are French too.
        open_page(page, live_server, checkout)
        expect(page.locator("#status")).to_have_text("En attente de paiement")
        page.reload()
        expect(page.get_by_role("button", name="Copier la facture")).to_be_visible()
        screenshot(page, "buyer-fr-unpaid")

        # The live turn to paid speaks French too (the script's words come from the page).
        pay(checkout)
        expect(page.locator("#status")).to_have_text("Payé")
        expect(page.get_by_role("heading", name="Reçu", exact=True)).to_be_visible()
        expect(page.locator("#receipt-sats")).to_have_text(re.compile(r"21\s000 sats"))


@pytest.mark.parametrize(
    "locale, waiting, amount, receipt, paid_on",
    [
        ("es-ES", "Esperando el pago", "12,50 US$", "Recibo", "Pagado el"),
        ("pt-BR", "Aguardando pagamento", "US$ 12,50", "Recibo", "Pago em"),
    ],
)
@WIDTHS
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_spanish_and_portuguese_pages(
    browser, live_server, viewport, locale, waiting, amount, receipt, paid_on
):
    language = locale[:2]
    unpaid = make_checkout(branded_merchant())
    paid = make_checkout(unpaid.merchant)
    pay(paid)
    with browser_page(browser, viewport, locale=locale) as page:
        serve_the_logo(page)
        open_page(page, live_server, unpaid)
        assert page.evaluate("document.documentElement.lang") == language
        expect(page.locator("#status")).to_have_text(waiting)
        assert text_of(page.locator("#amount-fiat")) == amount
        screenshot(page, f"buyer-{language}-unpaid")
        open_page(page, live_server, paid)
        expect(page.get_by_role("heading", name=receipt, exact=True)).to_be_visible()
        expect(page.locator(".receipt")).to_contain_text(paid_on)
        assert not overflows_horizontally(page)
        screenshot(page, f"buyer-{language}-receipt")


def test_the_json_api_stays_english_and_unknown_languages_fall_back(db):
    checkout = make_checkout()
    german = Client(HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    status = german.get(f"/checkout/{checkout.public_id}/status")
    assert status["Content-Type"] == "application/json"
    assert "Content-Language" not in status
    assert "No checkout invoice" in german.get("/checkout/inv_nothing/status").json()["detail"]
    # A language the pages do not have is ignored: the browser's German still counts.
    page = german.get(f"/checkout/{checkout.public_id}?lang=xx")
    assert "Warte auf Zahlung" in page.content.decode() and "django_language" not in page.cookies
    # Neither the cookie's nor the browser's language is known: English.
    dutch = Client(HTTP_ACCEPT_LANGUAGE="nl")
    dutch.cookies["django_language"] = "xx"
    page = dutch.get(f"/checkout/{checkout.public_id}")
    assert page["Content-Language"] == "en"
    assert '<html lang="en">' in page.content.decode()
    assert "Waiting for payment" in page.content.decode()


def test_the_not_found_privacy_terms_and_claim_pages_are_translated(db, store, local_cache):
    client = Client(HTTP_ACCEPT_LANGUAGE="fr")
    missing = client.get("/checkout/inv_nothing")
    assert missing.status_code == 404 and "Paiement introuvable" in missing.content.decode()
    privacy = client.get("/privacy?lang=de").content.decode()
    assert "<h1>Datenschutz</h1>" in privacy and "Was gespeichert wird" in privacy
    assert "Lightning-Zahlungen verraten dieser Seite weder Ihren Namen" in privacy  # the text too
    assert "Lightning payments" not in privacy
    # The choice sticks (a cookie); a fresh French browser gets French.
    terms = client.get("/terms").content.decode()
    assert "<h1>Nutzungsbedingungen</h1>" in terms
    assert "Eine Lightning-Zahlung ist endgültig, sobald sie geleistet ist." in terms
    french = Client(HTTP_ACCEPT_LANGUAGE="fr").get("/terms").content.decode()
    assert "<h1>Conditions</h1>" in french and "Un paiement Lightning est définitif" in french
    portuguese = Client(HTTP_ACCEPT_LANGUAGE="pt-BR").get("/privacy").content.decode()
    assert "Esta página define um único cookie" in portuguese
    spanish = Client(HTTP_ACCEPT_LANGUAGE="es").get("/terms").content.decode()
    assert "La página se ofrece tal cual." in spanish
    claim = client.get("/shopify/zap-apparel/claim?lang=es").content.decode()
    assert "¿Adónde lo enviamos?" in claim and "Realizar mi pedido" in claim
    assert "Código postal" in claim and '<html lang="es">' in claim


# --- the way back to the shop, branding, images ------------------------------------------


@WIDTHS
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_expired_checkout_links_back_to_the_merchants_website(browser, live_server, viewport):
    checkout = make_checkout(branded_merchant(), redirect_url="https://corner.example/thanks")
    expire(checkout)
    with browser_page(browser, viewport) as page:
        serve_the_logo(page)
        page.route("https://corner.example/**", lambda route: route.fulfill(body="the shop"))
        open_page(page, live_server, checkout)
        expect(page.locator("#status")).to_have_text("Expired")
        back = page.get_by_role("link", name="Back to Corner Café")
        expect(back).to_have_attribute("href", "https://corner.example/shop")
        screenshot(page, "buyer-expired")
        back.click()
        page.wait_for_url("https://corner.example/shop")


def test_without_a_website_the_way_back_is_the_redirect_url_if_it_is_http(db):
    client = Client()
    checkout = make_checkout(redirect_url="https://corner.example/thanks")
    expire(checkout)
    html = client.get(f"/checkout/{checkout.public_id}").content.decode()
    assert 'id="back-to-shop" href="https://corner.example/thanks"' in html
    CheckoutInvoice.objects.filter(pk=checkout.pk).update(redirect_url="javascript:alert(1)")
    html = client.get(f"/checkout/{checkout.public_id}").content.decode()
    assert "back-to-shop" not in html and "javascript:" not in html
    assert "Please go back to Corner Café to start a new payment." in html


@pytest.mark.parametrize("colour", ["#f7931a", "#1d3557", "#777777"])
@WIDTHS
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_brand_colour_is_the_primary_button_with_readable_text(
    browser, live_server, viewport, colour
):
    checkout = make_checkout(branded_merchant(brand_colour=colour))
    with browser_page(browser, viewport) as page:
        violations = []
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        serve_the_logo(page)
        response = open_page(page, live_server, checkout)
        policy = response.headers["content-security-policy"]
        nonce = re.search(r"style-src 'self' 'nonce-([\w-]+)'", policy).group(1)
        assert page.locator("style").get_attribute("nonce") is not None
        assert page.evaluate("document.querySelector('style').nonce") == nonce
        button = page.get_by_role("link", name="Open in wallet")
        background, text = button.evaluate(
            "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]"
        )
        assert background == rgb(colour)
        assert contrast_ratio(colour, hex_of(text)) >= 4.5, (colour, text)
        accent = page.evaluate(
            "getComputedStyle(document.querySelector('.merchant')).borderBottomColor"
        )
        assert accent == rgb(colour)
        assert violations == []
        screenshot(page, f"buyer-brand-{colour[1:]}")
    # Without a brand colour the policy has no nonce at all.
    plain = make_checkout(Merchant.objects.create(name="Plain"))
    policy = Client().get(f"/checkout/{plain.public_id}")["Content-Security-Policy"]
    assert "style-src 'self';" in policy and "nonce" not in policy


def rgb(colour: str) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def hex_of(css: str) -> str:
    r, g, b = (int(n) for n in re.findall(r"\d+", css)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


@WIDTHS
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_product_image_that_fails_to_load_leaves_no_broken_frame(browser, live_server, viewport):
    merchant = Merchant.objects.create(name="Corner Café")
    for image_url, late in (
        (f"{live_server.url}/static/checkout/no-such-image.png", False),
        ("https://img.corner.example/late.png", True),  # fails after the script ran
    ):
        product = Product.objects.create(
            merchant=merchant, name="Beans", price="12.50", currency="USD", image_url=image_url
        )
        checkout = make_checkout(merchant, product=product)
        with browser_page(browser, viewport) as page:
            if late:

                def fail_late(route):
                    time.sleep(0.7)
                    route.fulfill(status=404, body="")

                page.route("https://img.corner.example/**", fail_late)
            open_page(page, live_server, checkout)
            image = page.locator("img.product-image")
            expect(image).to_have_count(1)
            expect(image).to_be_hidden()
            broken = page.evaluate(
                "[...document.images].filter(i => i.checkVisibility() &&"
                " i.complete && i.naturalWidth === 0).length"
            )
            assert broken == 0
            expect(page.get_by_role("heading", name="Two espressos")).to_be_visible()
            screenshot(page, f"buyer-image-missing{'-late' if late else ''}")


# --- the Shopify payment page ------------------------------------------------------------


@pytest.fixture
def shop(store, fake_shopify, local_cache):
    support.standard_catalog(fake_shopify)
    from shopify_bridge.catalog import sync_catalog

    sync_catalog(store)
    return store


@WIDTHS
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_shopify_pay_page_has_the_invoice_component(
    browser, live_server, viewport, shop, tmp_path
):
    challenge = start(Client(), [{"variantId": 3001, "quantity": 3}]).json()
    path = challenge["checkoutUrl"].removeprefix("http://127.0.0.1:8000")
    bolt11 = challenge["invoice"]
    with browser_page(browser, viewport, origin=live_server.url) as page:
        page.goto(live_server.url + path)
        expect(page.locator("#status")).to_have_text("Waiting for payment")
        expect(page.get_by_role("heading", name=f"Order {challenge['orderId']}")).to_be_visible()
        assert text_of(page.locator("#amount-fiat")) == "$41.00"
        # The countdown runs.
        countdown = page.locator("#countdown")
        expect(countdown).to_have_text(re.compile(r"^1?\d:\d\d$"))
        first = countdown.inner_text()
        expect(countdown).not_to_have_text(first, timeout=3000)
        # Open in wallet, and copy.
        expect(page.get_by_role("link", name="Open in wallet")).to_have_attribute(
            "href", f"lightning:{bolt11}"
        )
        page.get_by_role("button", name="Copy invoice").click()
        expect(page.locator("#feedback")).to_have_text("Invoice copied. Paste it into your wallet.")
        assert page.evaluate("navigator.clipboard.readText()") == bolt11
        # The QR code is the invoice.
        image = tmp_path / "qr.png"
        page.locator(".qr svg").screenshot(path=str(image))
        decoded = subprocess.run(
            ["zbarimg", "--quiet", "--raw", str(image)], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert decoded == "lightning:" + bolt11.upper()
        # The long order id wraps: nothing sticks out at a phone's width.
        assert not overflows_horizontally(page)
        box = page.locator("h1.order-id").bounding_box()
        assert box["x"] + box["width"] <= viewport["width"]
        screenshot(page, "shopify-pay-unpaid")

        # Paid: the page notices by itself and shows the claim link.
        pay_shopify(challenge)
        expect(page.locator("#status")).to_have_text("Paid", timeout=10_000)
        expect(page.get_by_role("link", name="Enter shipping details")).to_be_visible()
        assert not overflows_horizontally(page)
        screenshot(page, "shopify-pay-paid")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_shopify_pay_page_in_german(browser, live_server, shop):
    challenge = start(Client(), [{"variantId": 3001, "quantity": 3}]).json()
    path = challenge["checkoutUrl"].removeprefix("http://127.0.0.1:8000")
    with browser_page(browser, PHONE, locale="de-DE") as page:
        page.goto(live_server.url + path)
        expect(page.locator("#status")).to_have_text("Warte auf Zahlung")
        assert text_of(page.locator("#amount-fiat")) == "41,00 $"
        expect(page.get_by_role("button", name="Rechnung kopieren")).to_be_visible()
        # The picker keeps the page's key.
        page.get_by_role("link", name="Português").click()
        expect(page.locator("#status")).to_have_text("Aguardando pagamento")
        assert "k=" in page.url
        screenshot(page, "shopify-pay-pt")


# --- the catalogs --------------------------------------------------------------------------


def translated_languages() -> list[str]:
    return [code for code, _ in django_settings.LANGUAGES if code != "en"]


@pytest.mark.parametrize("language", translated_languages())
def test_each_catalog_is_complete_and_compiled(language):
    """Every .po has its .mo, and the .mo holds exactly what the .po says (compiled again
    here with Babel): after editing a .po, run `.venv/bin/pybabel compile -d locale -D
    django`."""
    po_path = LOCALE_DIR / language / "LC_MESSAGES" / "django.po"
    mo_path = po_path.with_suffix(".mo")
    assert po_path.exists(), po_path
    assert mo_path.exists(), f"{mo_path} is missing: compile the catalog"
    with po_path.open("rb") as f:
        catalog = read_po(f)
    assert not catalog.fuzzy
    for message in catalog:
        if message.id:
            assert message.string, f"{language}: untranslated {message.id!r}"
            assert not message.fuzzy, f"{language}: fuzzy {message.id!r}"
            for name in re.findall(r"%\(\w+\)s|\{\w+\}", message.id):
                assert name in message.string, f"{language}: {name} lost in {message.string!r}"
    fresh = io.BytesIO()
    write_mo(fresh, catalog)
    fresh.seek(0)
    expected = gettext.GNUTranslations(fresh)._catalog
    with mo_path.open("rb") as f:
        committed = gettext.GNUTranslations(f)._catalog
    expected.pop("", None)
    committed.pop("", None)
    assert committed == expected, f"{mo_path} is out of date: compile the catalog"


def test_every_catalog_has_the_same_messages():
    ids = {}
    for language in translated_languages():
        with (LOCALE_DIR / language / "LC_MESSAGES" / "django.po").open("rb") as f:
            ids[language] = {m.id for m in read_po(f) if m.id}
    first = next(iter(ids.values()))
    assert all(found == first for found in ids.values())


def test_every_string_of_the_buyer_pages_is_in_the_catalogs():
    """A string added to a buyer page but not to locale/ would stay English."""
    root = LOCALE_DIR.parent
    wanted = set()
    templates = [*root.glob("templates/checkout/*.html"), *root.glob("templates/shopify_bridge/*")]
    for template in templates:
        source = template.read_text(encoding="utf-8")
        wanted |= set(re.findall(r"""{% translate ["'](.+?)["'] %}""", source))
        wanted |= set(re.findall(r"""_\("(.+?)"\)""", source))
        blocks = re.findall(r"{% blocktranslate([^%]*)%}(.+?){% endblocktranslate %}", source, re.S)
        for options, block in blocks:
            if "trimmed" in options.split():  # lines joined by one space, as Django does
                block = " ".join(line.strip() for line in block.strip().splitlines())
            wanted.add(re.sub(r"{{ (\w+) }}", r"%(\1)s", block))
    for module in ("checkout/pages.py", "shopify_bridge/pages.py"):
        source = (root / module).read_text(encoding="utf-8")
        wanted |= set(re.findall(r"""(?<![\w.])(?:_|gettext_lazy)\(\s*"(.+?)"\s*\)""", source))
    assert len(wanted) > 60
    for language in translated_languages():
        with (LOCALE_DIR / language / "LC_MESSAGES" / "django.po").open("rb") as f:
            known = {m.id for m in read_po(f) if m.id}
        assert wanted <= known, f"{language}: not in the catalog: {sorted(wanted - known)}"
