"""LNURL for refunds: paying a buyer's Lightning address (LUD-16) or LNURL-pay (LUD-06),
and the LNURL-withdraw (LUD-03) of a refund link.

The `lnurl` package (LNbits') encodes and decodes bech32 LNURLs and validates what a pay
server answers (`LnurlPayResponse`, `LnurlPayActionResponse`). Its own HTTP client is not
used: it follows redirects and connects to whatever the name resolves to at that moment.
Every fetch here goes through the SSRF guard and connects to the address it vetted
(webhooks.http.request), follows no redirect, and reads at most 64 KB.
"""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlencode, urlsplit

from django.conf import settings

from config.ssrf import UnsafeTarget, check_url
from lightning import invoice_codec
from webhooks import http

USER_AGENT = "Zapgate-Refunds/1"
MAX_ANSWER_BYTES = 64 * 1024
# LUD-16: the user name is a-z, 0-9, -, _, . (and + for a tag).
_USERNAME = re.compile(r"^[a-z0-9\-_.+]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9a-fA-F:.]+\](:[0-9]{1,5})?$")
# As the lnurl package: plain http only for Tor and the local machine.
_INSECURE_HOSTS = {"127.0.0.1", "0.0.0.0", "localhost", "[::1]", "::1"}


class AddressError(Exception):
    """The refund address cannot be paid. `permanent`: trying again will not help (a
    malformed address, an amount it does not take); else it may (the server is down)."""

    def __init__(self, message: str, permanent: bool = False):
        self.permanent = permanent
        super().__init__(message)


def check_address(address: str, field: str = "refundAddress") -> str:
    """`address` if it can be paid to (its form; whether it answers is seen at payout), else
    a 400 `invalid_refund_address` naming the field. Whether a string is a usable address
    (a bech32 checksum, a host name) is more than a JSON schema can say, so it has its own
    slug, as an unpayable invoice has."""
    from config.problems import Problem

    try:
        pay_url(address)
    except AddressError as exc:
        raise Problem(400, "invalid_refund_address", str(exc), {field: [str(exc)]}) from None
    return address


def pay_url(address: str) -> str:
    """The URL of the pay request behind a Lightning address or an LNURL-pay (bech32
    `lnurl1...`, or a LUD-17 `lnurlp://` URL). Raises AddressError (permanent)."""
    text = address.strip()
    if text.lower().startswith("lightning:"):
        text = text[len("lightning:") :]
    if "@" in text:
        name, _, domain = text.rpartition("@")
        if not _USERNAME.match(name or "_") or not _DOMAIN.match(domain):
            raise AddressError(f"{address!r} is not a Lightning address (user@domain)", True)
        host = domain.rsplit(":", 1)[0] if not domain.startswith("[") else domain
        scheme = "http" if host.endswith(".onion") or host in _INSECURE_HOSTS else "https"
        url = f"{scheme}://{domain}/.well-known/lnurlp/{name or '_'}"
    elif text.lower().startswith("lnurl1"):
        from lnurl import url_decode  # imported on use: pydantic is heavy for every process

        try:
            url = url_decode(text)
        except Exception as exc:
            raise AddressError(f"not a valid LNURL: {exc or type(exc).__name__}", True) from None
    elif text.lower().startswith("lnurlp://"):
        rest = text[len("lnurlp://") :]
        host = urlsplit("//" + rest).hostname or ""
        scheme = "http" if host.endswith(".onion") or host in _INSECURE_HOSTS else "https"
        url = f"{scheme}://{rest}"
    else:
        raise AddressError(
            f"{address!r} is neither a Lightning address (user@domain) nor an LNURL-pay", True
        )
    try:
        check_url(url, allow_private=True, resolve=False)
    except UnsafeTarget as exc:
        raise AddressError(f"the address's URL {url} cannot be used: {exc}", True) from None
    return url


def _get_json(url: str) -> dict:
    outcome = http.request(
        "GET",
        url,
        None,
        {"Accept": "application/json", "User-Agent": USER_AGENT},
        settings.REFUNDS_FETCH_TIMEOUT_SECONDS,
        settings.REFUNDS_ALLOW_PRIVATE_TARGETS,
        max_bytes=MAX_ANSWER_BYTES,
    )
    if outcome.error.startswith("refused:"):
        raise AddressError(f"{urlsplit(url).hostname}: {outcome.error}", True)
    try:
        data = json.loads(outcome.excerpt) if outcome.excerpt else None
    except ValueError:
        data = None
    if isinstance(data, dict) and str(data.get("status", "")).upper() == "ERROR":
        raise AddressError(f"{urlsplit(url).hostname} answered: {data.get('reason', 'error')}")
    if outcome.error:
        raise AddressError(f"{urlsplit(url).hostname}: {outcome.error}")
    if not isinstance(data, dict):
        raise AddressError(f"{urlsplit(url).hostname} did not answer a JSON object")
    return data


def invoice_for(address: str, amount_msat: int, comment: str = "") -> str:
    """Ask the pay server behind `address` for an invoice of `amount_msat` (LUD-06), and
    check it: its amount is exactly that, and it commits to the pay request's metadata
    (description hash). Returns the BOLT11. Raises AddressError."""
    from lnurl import LnurlPayActionResponse, LnurlPayResponse
    from pydantic import ValidationError

    url = pay_url(address)
    try:
        pay = LnurlPayResponse.model_validate(_get_json(url))
    except ValidationError as exc:
        raise AddressError(f"not an LNURL-pay request: {_first_error(exc)}", True) from None
    if not pay.minSendable <= amount_msat <= pay.maxSendable:
        raise AddressError(
            f"the address takes {pay.minSendable} to {pay.maxSendable} msat, "
            f"not {amount_msat} msat",
            True,
        )
    params = {"amount": amount_msat}
    if comment and pay.commentAllowed:
        params["comment"] = comment[: pay.commentAllowed]
    callback = str(pay.callback)
    callback += ("&" if urlsplit(callback).query else "?") + urlencode(params)
    try:
        action = LnurlPayActionResponse.model_validate(_get_json(callback))
    except ValidationError as exc:
        raise AddressError(f"the pay server's answer has no invoice: {_first_error(exc)}") from None
    bolt11 = str(action.pr)
    try:
        decoded = invoice_codec.decode_invoice(bolt11)
    except ValueError as exc:
        raise AddressError(f"the pay server's invoice does not decode: {exc}") from None
    if int(decoded.amount_msat or 0) != amount_msat:
        raise AddressError(
            f"the pay server's invoice is for {decoded.amount_msat} msat, not {amount_msat}", True
        )
    expected = hashlib.sha256(str(pay.metadata).encode()).hexdigest()
    if (decoded.description_hash or "") != expected:
        raise AddressError(
            "the pay server's invoice does not commit to its metadata (description hash)", True
        )
    return bolt11


def _first_error(exc) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "answer"
    return f"{where}: {error.get('msg', 'invalid')}"


def encode(url: str) -> str:
    """The bech32 LNURL of `url`, lower case (`lnurl1...`)."""
    from lnurl import url_encode

    return url_encode(url).lower()
