"""Logins and headers: the admin login locks out after repeated failures, cookies are
https-only and HSTS is sent when the gateway is served over https, and the admin and /docs
have a Content-Security-Policy under which they still work in a real browser."""

import json
import subprocess
import sys
import textwrap

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from .processes import ROOT, child_env
from .test_checkout_page import browser  # noqa: F401 (the shared Chromium fixture)

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "a long passphrase 42"


def login(client, username, password, address="203.0.113.7"):
    client.get(LOGIN, REMOTE_ADDR=address)  # the form, as a browser would load it first
    return client.post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def test_the_login_locks_a_user_out_from_an_address_after_repeated_failures(operator, settings):
    client = Client(enforce_csrf_checks=False)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "root", "wrong").status_code == 200  # the form, with an error
    assert logged_in(login(client, "root", PASSWORD))  # under the limit: a success resets
    client.logout()
    for _ in range(15):
        response = login(client, "root", "wrong")
        assert not logged_in(response)
    response = login(client, "root", PASSWORD)
    assert not logged_in(response) and response.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another address, or another user name from this one, is not locked out.
    assert logged_in(login(Client(), "root", PASSWORD, address="198.51.100.9"))
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    assert logged_in(login(Client(), "ops", PASSWORD))


def test_the_lockout_uses_the_address_the_trusted_proxy_names(operator, settings):
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(LOGIN, {"username": "root", "password": "x"}, HTTP_X_REAL_IP="192.0.2.1")
    locked = client.post(
        LOGIN, {"username": "root", "password": PASSWORD}, HTTP_X_REAL_IP="192.0.2.1"
    )
    assert locked.status_code == 429
    other = client.post(
        LOGIN, {"username": "root", "password": PASSWORD}, HTTP_X_REAL_IP="192.0.2.2"
    )
    assert logged_in(other)


HTTPS_PROBE = textwrap.dedent(
    """
    import json, django
    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    get_user_model().objects.create_superuser("probe", "p@example.com", "a long passphrase 42")
    out = {}
    for label, kwargs in (("https", {"secure": True}),
                          ("proxied", {"HTTP_X_FORWARDED_PROTO": "https"}),
                          ("http", {})):
        client = Client()
        client.get("/admin/login/", **kwargs)
        response = client.post("/admin/login/?next=/admin/",
            {"username": "probe", "password": "a long passphrase 42", "next": "/admin/"},
            **kwargs)
        cookies = {name: {"secure": bool(m["secure"]), "httponly": bool(m["httponly"])}
                   for name, m in client.cookies.items()}
        out[label] = {"status": response.status_code, "cookies": cookies,
                      "hsts": response.headers.get("Strict-Transport-Security")}
    print(json.dumps(out))
    """
)


def probe_https(tmp_path, **env):
    result = subprocess.run(
        [sys.executable, "-c", HTTPS_PROBE],
        cwd=ROOT,
        env=child_env(tmp_path, DJANGO_SETTINGS_MODULE="config.settings", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_cookies_are_secure_and_hsts_is_sent_behind_https(tmp_path):
    """Settings are read at start-up, so a child process starts with an https
    PUBLIC_BASE_URL (and a proxy header named), on the test database."""
    seen = probe_https(
        tmp_path,
        PUBLIC_BASE_URL="https://pay.example.com",
        ALLOWED_HOSTS="testserver",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
    )
    for label in ("https", "proxied"):
        assert seen[label]["status"] == 302, seen
        cookies = seen[label]["cookies"]
        assert set(cookies) == {"sessionid", "csrftoken"}, cookies
        assert all(flags["secure"] for flags in cookies.values()), cookies
        assert cookies["sessionid"]["httponly"], cookies
        assert seen[label]["hsts"] == "max-age=31536000", seen
    assert seen["http"]["hsts"] is None  # never over plain http


@pytest.mark.django_db(transaction=True)
def test_plain_http_keeps_plain_cookies_and_no_hsts(tmp_path):
    seen = probe_https(
        tmp_path, PUBLIC_BASE_URL="http://127.0.0.1:8000", ALLOWED_HOSTS="testserver"
    )
    for label in ("https", "proxied", "http"):
        assert seen[label]["hsts"] is None, seen
    cookies = seen["http"]["cookies"]
    assert "sessionid" in cookies and not any(flags["secure"] for flags in cookies.values())
    # Without SECURE_PROXY_SSL_HEADER a client's X-Forwarded-Proto is not believed.
    assert seen["proxied"]["hsts"] is None


def csp(response) -> dict:
    policy = response["Content-Security-Policy"]
    return {
        part.split()[0]: part.split()[1:] for part in (p.strip() for p in policy.split(";")) if part
    }


@pytest.mark.django_db
def test_the_admin_and_docs_have_a_content_security_policy(operator):
    client = Client()
    for path in ("/admin/login/", "/docs", "/docs?script="):
        policy = csp(client.get(path))
        assert policy["script-src"] == ["'self'"], (path, policy)
        assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    client.force_login(operator)
    for path in ("/admin/", "/admin/checkout/merchant/", "/admin/checkout/merchant/add/"):
        response = client.get(path)
        assert response.status_code == 200 and csp(response)["script-src"] == ["'self'"]
    # The buyer's pages keep their own policy.
    assert "img-src 'self' https: data:" in Client().get("/privacy")["Content-Security-Policy"]


@pytest.fixture
def browser_page(browser, live_server):  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    def on_console(message):
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    yield page, problems
    context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_docs_render_under_the_policy_in_a_browser(browser_page, live_server):
    page, problems = browser_page
    response = page.goto(f"{live_server.url}/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Zapgate API")
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    page.locator(".opblock-summary").first.click()  # operations open (scripts run)
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert problems == [], problems  # no Content-Security-Policy violation, no script error


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_admin_works_under_the_policy_in_a_browser(browser_page, live_server):
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    page, problems = browser_page
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto(f"{live_server.url}/admin/checkout/product/add/")
    page.fill("#id_name", "Beans")
    # Scripts of the admin run: the "add another merchant" link opens a popup window.
    with page.expect_popup() as popup:
        page.click("#add_id_merchant")
    expect(popup.value.locator("#id_name")).to_be_visible()
    assert problems == [], problems
