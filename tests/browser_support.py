"""Shared pieces of the page tests: Debian's Chromium driven by Playwright, pages at a phone's
and a desktop's width, and screenshots kept where a person can look at them after a run.

Screenshots go to `$SCREENSHOTS_DIR` (default `var/screenshots` in the project folder), one
PNG per page and width, named after the test's own name for it; a run overwrites the last.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}
WIDTHS = {"desktop": DESKTOP, "phone": PHONE}
SCREENSHOTS_DIR = Path(
    os.environ.get("SCREENSHOTS_DIR") or Path(__file__).resolve().parent.parent / "var/screenshots"
)


@contextmanager
def chromium():
    """A headless Chromium; a missing browser is a failure, not a skip (CI installs it)."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium"
    assert shutil.which("zbarimg"), "zbarimg is needed: apt-get install zbar-tools"
    # Playwright's sync API keeps an event loop in this thread, so Django takes the ORM
    # calls the tests make between page actions for async code; they are plain sync code.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()


@contextmanager
def browser_page(browser, viewport=DESKTOP, locale: str | None = None, origin: str | None = None):
    """A page in a fresh context (its own cookies); JavaScript errors on it fail the test."""
    options = {"viewport": viewport, "device_scale_factor": 1}
    if locale:
        options["locale"] = locale
    context = browser.new_context(**options)
    if origin:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page, name: str) -> Path:
    """Save the whole page as `<name>-<width>.png` for the page's current width."""
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    label = next((k for k, v in WIDTHS.items() if v["width"] == width), f"{width}px")
    path = SCREENSHOTS_DIR / f"{name}-{label}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def overflows_horizontally(page) -> bool:
    """Whether anything sticks out past the right edge of the window (a person would have to
    scroll sideways to read it)."""
    return page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth + 1"
    )
