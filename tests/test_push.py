"""Push over WebSockets, through the stack `make run` starts (uvicorn serving HTTP and
WebSockets, a Celery worker with the watcher): the hosted page's socket, LNbits'
`/api/v1/ws/{id}`, their limits, and the page in a real Chromium turning paid by push.

Each transport between the worker and the web processes is exercised: the embedded one
(the database: a shared poll on SQLite, LISTEN/NOTIFY on PostgreSQL) always, and
channels-redis when the run has Redis (CI's PostgreSQL run)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time

import httpx
import pytest
import websockets

from .browser_support import CHROMIUM, CHROMIUM_ARGS
from .page_push import time_to_paid
from .processes import Stack, free_port

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

MAX_PER_ADDRESS = 6
TRANSPORTS = ["database"]
if os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
    TRANSPORTS.append("redis")


@pytest.fixture(params=TRANSPORTS)
def stack(request, tmp_path):
    """The stack on one transport, with one web process (so the per-address bound is the
    whole bound). The tests talk to it over HTTP and WebSockets only."""
    env = {"WEB_PROCESSES": "1", "PUSH_MAX_SOCKETS_PER_ADDRESS": str(MAX_PER_ADDRESS)}
    if request.param == "database":
        env["PUSH_REDIS_URL"] = ""
    running = Stack(tmp_path, free_port(), **env).start()
    yield running
    running.stop()


def ws_url(stack: Stack, path: str) -> str:
    return f"ws://127.0.0.1:{stack.port}{path}"


def api(stack: Stack, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"X-Api-Key": stack.key, **kwargs.pop("headers", {})}
    return httpx.request(method, f"{stack.base}{path}", headers=headers, timeout=30, **kwargs)


def new_checkout(stack: Stack) -> dict:
    made = api(stack, "POST", "/api/checkout/invoices", json={"amount": "21", "currency": "SAT"})
    assert made.status_code == 201, made.text
    return made.json()


def dev_pay(stack: Stack, bolt11: str) -> None:
    paid = httpx.post(f"{stack.base}/api/dev/pay", json={"bolt11": bolt11}, timeout=30)
    assert paid.status_code == 200, paid.text


async def receive(socket, timeout: float = 15.0) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


def checkout_socket_sends_the_status_then_paid_then_closes(stack):
    checkout = new_checkout(stack)

    async def scenario():
        path = f"/ws/checkout/{checkout['invoiceId']}"
        async with websockets.connect(ws_url(stack, path)) as socket:
            opened = await receive(socket)
            dev_pay(stack, checkout["lightningInvoice"])
            pushed = await receive(socket)
            with pytest.raises(websockets.ConnectionClosedOK):
                await asyncio.wait_for(socket.recv(), 10)
        return opened, pushed

    opened, pushed = asyncio.run(scenario())
    status = httpx.get(f"{stack.base}/checkout/{checkout['invoiceId']}/status").json()
    assert opened["status"] == "unpaid" and opened["invoiceId"] == checkout["invoiceId"]
    # What the socket pushes is what the status endpoint answers, to the field.
    assert pushed == status and pushed["status"] == "paid" and pushed["paidAt"]


def a_socket_opened_after_the_payment_hears_it_at_once(stack):
    checkout = new_checkout(stack)
    dev_pay(stack, checkout["lightningInvoice"])

    async def scenario():
        path = f"/ws/checkout/{checkout['invoiceId']}"
        for _ in range(100):  # until the watcher has recorded it
            async with websockets.connect(ws_url(stack, path)) as socket:
                body = await receive(socket)
                if body["status"] == "paid":
                    return body
            await asyncio.sleep(0.1)
        raise AssertionError("the payment was never shown")

    assert asyncio.run(scenario())["status"] == "paid"


def unknown_checkout_socket_is_refused(stack):
    async def scenario():
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url(stack, "/ws/checkout/inv_nothing")):
                pass
        return refused.value.response.status_code

    assert asyncio.run(scenario()) == 403


def lnbits_socket_by_key_sends_balance_and_the_payment_as_the_api_shows_it(stack):
    async def scenario():
        async with websockets.connect(ws_url(stack, f"/api/v1/ws/{stack.key}")) as socket:
            made = api(stack, "POST", "/api/v1/payments", json={"out": False, "amount": 34})
            assert made.status_code == 201, made.text
            dev_pay(stack, made.json()["bolt11"])
            return made.json(), await receive(socket)

    made, pushed = asyncio.run(scenario())
    details = api(stack, "GET", f"/api/v1/payments/{made['payment_hash']}").json()["details"]
    wallet = api(stack, "GET", "/api/v1/wallet").json()
    assert pushed["payment"] == details
    assert pushed["payment"]["status"] == "success" and pushed["payment"]["amount_msat"] == 34_000
    assert pushed["wallet_balance"] == wallet["balance"] // 1000


def lnbits_socket_by_payment_hash_before_and_after_it_settles(stack):
    made = api(stack, "POST", "/api/v1/payments", json={"out": False, "amount": 5}).json()
    path = f"/api/v1/ws/{made['payment_hash']}"

    async def scenario():
        async with websockets.connect(ws_url(stack, path)) as before:
            dev_pay(stack, made["bolt11"])
            first = await receive(before)
        async with websockets.connect(ws_url(stack, path)) as after:
            second = await receive(after)  # already settled: sent when it opens
        return first, second

    assert asyncio.run(scenario()) == ({"pending": False, "status": "success"},) * 2


def a_reconnecting_key_socket_gets_what_it_missed_with_since(stack):
    """A client that was away passes `since` (unix seconds) and gets each settled incoming
    payment since then once, oldest first, as GET /api/v1/payments lists them."""
    hashes = []
    start = int(time.time()) - 1
    for amount in (7, 8):
        made = api(stack, "POST", "/api/v1/payments", json={"out": False, "amount": amount})
        dev_pay(stack, made.json()["bolt11"])
        hashes.append(made.json()["payment_hash"])

    async def scenario():
        for _ in range(100):
            listed = api(stack, "GET", "/api/v1/payments", params={"limit": 100}).json()
            if all(
                any(p["payment_hash"] == h and p["status"] == "success" for p in listed)
                for h in hashes
            ):
                break
            await asyncio.sleep(0.1)
        path = f"/api/v1/ws/{stack.key}?since={start}"
        async with websockets.connect(ws_url(stack, path)) as socket:
            got = []
            while True:
                try:
                    got.append(await receive(socket, timeout=2))
                except TimeoutError:
                    return got

    replayed = [m["payment"]["payment_hash"] for m in asyncio.run(scenario())]
    assert replayed[-2:] == hashes and len(set(replayed)) == len(replayed)


def a_key_revoked_while_its_socket_is_open_closes_it(stack):
    from checkout.models import ApiKey, Merchant
    from checkout.services import issue_api_key, revoke_api_key

    key, raw = issue_api_key(Merchant.objects.get(), ApiKey.Kind.INVOICE, "socket")

    async def scenario():
        async with websockets.connect(ws_url(stack, f"/api/v1/ws/{raw}")) as socket:
            await asyncio.to_thread(revoke_api_key, key)
            made = api(stack, "POST", "/api/v1/payments", json={"out": False, "amount": 3})
            dev_pay(stack, made.json()["bolt11"])
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 15)
            return closed.value.rcvd.code

    assert asyncio.run(scenario()) == 4401


def bad_keys_and_ids_are_refused_at_the_handshake(stack):
    async def status_of(path):
        try:
            async with websockets.connect(ws_url(stack, path)):
                return 101
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    async def scenario():
        return [
            await status_of("/api/v1/ws/zg_admin_not-a-key"),
            await status_of("/api/v1/ws/" + "x" * 300),
            await status_of("/api/v1/ws/a%20b"),
        ]

    assert asyncio.run(scenario()) == [403, 403, 403]


def sockets_are_bounded_per_client_address_and_a_closed_one_frees_its_place(stack):
    checkout = new_checkout(stack)
    url = ws_url(stack, f"/ws/checkout/{checkout['invoiceId']}")

    async def scenario():
        opened = [await websockets.connect(url) for _ in range(MAX_PER_ADDRESS)]
        for socket in opened:
            assert (await receive(socket))["status"] == "unpaid"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url)
        await opened.pop().close()
        for _ in range(100):  # once the server has seen the close, the place is free
            try:
                again = await websockets.connect(url)
                break
            except websockets.InvalidStatus:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the closed socket's place was never freed")
        body = await receive(again)
        for socket in [*opened, again]:
            await socket.close()
        return refused.value.response.status_code, body

    code, body = asyncio.run(scenario())
    assert code == 403 and body["status"] == "unpaid"


def test_the_lnbits_socket_and_the_hosted_page_socket(stack):
    """LNbits' socket by key: balance and details of each settled incoming payment, and what
    was missed with `since`; by payment hash: the final status, before and after; a key
    revoked while its socket is open closes it; bad ids refused. The hosted page's socket:
    status on opening, then paid, then closed; at once for a socket opened after the
    payment; refused for an unknown checkout; bounded per client address. (One stack for
    all: starting one takes seconds. The LNbits scenarios come first, so that `since`
    replays only their own payments.)"""
    lnbits_socket_by_key_sends_balance_and_the_payment_as_the_api_shows_it(stack)
    lnbits_socket_by_payment_hash_before_and_after_it_settles(stack)
    a_reconnecting_key_socket_gets_what_it_missed_with_since(stack)
    a_key_revoked_while_its_socket_is_open_closes_it(stack)
    bad_keys_and_ids_are_refused_at_the_handshake(stack)
    checkout_socket_sends_the_status_then_paid_then_closes(stack)
    a_socket_opened_after_the_payment_hears_it_at_once(stack)
    unknown_checkout_socket_is_refused(stack)
    sockets_are_bounded_per_client_address_and_a_closed_one_frees_its_place(stack)


@pytest.mark.browser
def test_the_page_turns_paid_by_push_and_prints_how_soon(stack):
    """20 payments, each made from the page itself (so one clock measures): the time from
    sending the payment to the page showing "Paid", and no status poll while the socket is
    open. The figure is printed; speed is asserted nowhere (bench/push.py measures it)."""
    from playwright.sync_api import sync_playwright

    latencies = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            polls = []
            page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/status") else 0)
            for _ in range(20):
                checkout = new_checkout(stack)
                page.goto(f"{stack.base}/checkout/{checkout['invoiceId']}")
                latencies.append(time_to_paid(page, checkout["lightningInvoice"]))
        finally:
            browser.close()
    print(
        f"\npage shows paid after the payment ({len(latencies)} payments): "
        f"p50 {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
    )
    assert len(latencies) == 20
    assert polls == [], f"the page polled while its socket was open: {polls[:3]}"
