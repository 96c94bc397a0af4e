"""The `Payment` HTTP authentication scheme (MPP, draft-httpauth-payment with the Lightning
`charge` intent): the same offer as an L402 challenge, and its credential, checked
statelessly as L402 tokens are.

Challenge:
    WWW-Authenticate: Payment id="..", realm="..", method="lightning", intent="charge",
                      request="<base64url JCS JSON>", expires="<RFC 3339>"
where `request` is {amount (sats, a decimal string), currency "sat", description,
externalId (the resource sold), recipient (the merchant's id, if any), methodDetails
{invoice, paymentHash, network}}, and `id` is an HMAC under the server secret of realm,
method, intent, request and expires: only this server makes ids, so an echoed challenge
with a valid id is one it issued, unaltered. Nothing per challenge is stored.

Credential:
    Authorization: Payment <base64url JCS JSON {challenge: <the challenge echoed>,
                                                payload: {preimage: <64 hex>}}>
It is good while `expires` has not passed, for the resource and merchant its request
names, when sha256(preimage) is the request's payment hash: the preimage proves payment.
A good credential may be sent again until it expires (as an L402 token is).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from django.conf import settings

from .macaroons import CredentialError, server_secret

SCHEME = "Payment"
METHOD = "lightning"
INTENT = "charge"
NETWORKS = (("lnbcrt", "regtest"), ("lntbs", "signet"), ("lntb", "testnet"), ("lnbc", "mainnet"))
MAX_CREDENTIAL = 16_384


def jcs(value) -> str:
    """RFC 8785 canonical JSON for what this scheme carries (strings, integers, objects)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def network_of(bolt11: str) -> str:
    lowered = bolt11.lower()
    return next((name for prefix, name in NETWORKS if lowered.startswith(prefix)), "mainnet")


def _challenge_id(realm: str, request: str, expires: str) -> str:
    message = jcs([realm, METHOD, INTENT, request, expires]).encode()
    return b64url(hmac.new(server_secret(), b"mpp|" + message, hashlib.sha256).digest())


@dataclass(frozen=True)
class Offered:
    """What an MPP challenge sells (the fields of its `request`)."""

    bolt11: str
    payment_hash: str
    amount_sats: int
    resource: str
    merchant: str | None
    description: str = ""


def request_param(offered: Offered) -> str:
    request = {
        "amount": str(offered.amount_sats),
        "currency": "sat",
        "externalId": offered.resource,
        "methodDetails": {
            "invoice": offered.bolt11,
            "paymentHash": offered.payment_hash,
            "network": network_of(offered.bolt11),
        },
    }
    if offered.description:
        request["description"] = offered.description
    if offered.merchant:
        request["recipient"] = offered.merchant
    return b64url(jcs(request).encode())


def challenge_header(offered: Offered, expires_at: datetime, realm: str) -> str:
    request = request_param(offered)
    expires = rfc3339(expires_at)
    return (
        f'{SCHEME} id="{_challenge_id(realm, request, expires)}", realm="{realm}", '
        f'method="{METHOD}", intent="{INTENT}", request="{request}", expires="{expires}"'
    )


@dataclass(frozen=True)
class Paid:
    """A checked credential: what was paid for."""

    challenge_id: str
    payment_hash: str
    resource: str
    merchant: str | None
    amount_sats: int
    expires: datetime


def parse_authorization(header: str) -> str | None:
    """The credential of `Authorization: Payment <credential>`; None for another scheme."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != SCHEME.lower():
        return None
    return rest.strip()


def _malformed(why: str) -> CredentialError:
    return CredentialError(
        401, "malformed_credential", f"the Payment credential is malformed: {why}"
    )


def _text(mapping: dict, key: str, where: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str):
        raise _malformed(f"{where}.{key} must be a string")
    return value


@lru_cache(maxsize=8192)
def verify(credential: str) -> Paid:
    """Check the credential's challenge (issued here, unaltered) and its proof of payment;
    expiry and scope are checked by `check`, on every use. Valid ones are remembered per
    process, as L402 tokens are."""
    if not credential or len(credential) > MAX_CREDENTIAL:
        raise _malformed("it is empty or too long")
    try:
        decoded = json.loads(unb64url(credential))
    except (binascii.Error, ValueError):
        raise _malformed("it is not base64url of a JSON object") from None
    if not isinstance(decoded, dict):
        raise _malformed("it is not a JSON object")
    challenge, payload = decoded.get("challenge"), decoded.get("payload")
    if not isinstance(challenge, dict) or not isinstance(payload, dict):
        raise _malformed("it needs a challenge and a payload object")
    fields = {
        key: _text(challenge, key, "challenge")
        for key in ("id", "realm", "method", "intent", "request", "expires")
    }
    preimage = _text(payload, "preimage", "payload").lower()
    if len(preimage) != 64:
        raise _malformed("payload.preimage must be 64 hex characters")
    try:
        proof = bytes.fromhex(preimage)
    except ValueError:
        raise _malformed("payload.preimage must be hex") from None
    if (fields["method"], fields["intent"]) != (METHOD, INTENT):
        raise CredentialError(
            402, "unsupported_payment_method", "only method lightning, intent charge is accepted"
        )
    expected = _challenge_id(fields["realm"], fields["request"], fields["expires"])
    if not hmac.compare_digest(expected, fields["id"]):
        raise CredentialError(
            402, "unknown_challenge", "the challenge was not issued here, or was altered"
        )
    # The id holds, so request and expires are this server's own words.
    request = json.loads(unb64url(fields["request"]))
    payment_hash = request["methodDetails"]["paymentHash"]
    if not hmac.compare_digest(hashlib.sha256(proof).hexdigest(), payment_hash):
        raise CredentialError(
            402, "invalid_preimage", "the preimage does not match the challenge's payment hash"
        )
    return Paid(
        challenge_id=fields["id"],
        payment_hash=payment_hash,
        resource=request["externalId"],
        merchant=request.get("recipient"),
        amount_sats=int(request["amount"]),
        expires=datetime.strptime(fields["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
    )


def check(paid: Paid, resource: str, merchant: str | None, now: datetime | None = None) -> None:
    """The credential must be for this resource of this merchant, and not expired."""
    if paid.merchant != merchant:
        raise CredentialError(
            402, "token_out_of_scope", "the credential was issued for another merchant"
        )
    if not _covers(paid.resource, resource):
        raise CredentialError(
            402, "token_out_of_scope", f"the credential is for the resource {paid.resource!r}"
        )
    if (now or datetime.now(UTC)) >= paid.expires:
        raise CredentialError(402, "token_expired", "the credential has expired; pay again")


def _covers(paid_for: str, resource: str) -> bool:
    """The same resource; or a bundle's credential for one of its items."""
    if paid_for == resource:
        return True
    kind, _, slug = resource.partition("/")
    bundle, _, slugs = paid_for.partition("/")
    return kind == "content" and bundle == "bundle" and slug in slugs.split(",")


def receipt(paid: Paid) -> str:
    """The `Payment-Receipt` header of an answer a credential paid for."""
    return b64url(
        jcs(
            {
                "method": METHOD,
                "challengeId": paid.challenge_id,
                "reference": paid.payment_hash,
                "status": "success",
                "timestamp": rfc3339(datetime.now(UTC)),
            }
        ).encode()
    )


def realm() -> str:
    return settings.PUBLIC_BASE_URL.split("://", 1)[-1]
