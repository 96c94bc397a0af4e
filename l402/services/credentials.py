"""Checking L402 credentials: against the request they come with (the gateway's own
resources, content, bundles, proxies), or for a merchant's server that sells its own."""

from __future__ import annotations

from dataclasses import dataclass, replace

from checkout.models import Merchant

from .. import macaroons, mpp
from ..macaroons import CredentialError, RequestScope, Token
from ..models import PaidContent
from .content import content_offer
from .offers import Offer


def admit(authorization: str, offer: Offer, scopes: list[RequestScope]) -> dict | None:
    """Does the `Authorization` header pay for this offer? None: it carries no credential
    (offer a challenge). Else the headers of the paid answer: an L402 token must hold for
    every scope (one per item of a bundle), an MPP `Payment` credential must be for the
    offer's resource (its answer carries a `Payment-Receipt`). Raises CredentialError:
    malformed_* for a header that is no credential, any other error for one that is
    unusable here (foreign, for something else, expired)."""
    credential = mpp.parse_authorization(authorization)
    if credential is not None:
        paid = mpp.verify(credential)
        mpp.check(paid, offer.resource, offer.merchant.public_id if offer.merchant else None)
        return {"Payment-Receipt": mpp.receipt(paid)}
    for scope in scopes:
        if authorize(authorization, scope) is None:
            return None
    return {}


def authorize(authorization: str, scope: RequestScope) -> Token | None:
    """The verified token of an `Authorization` header, checked against the request.
    None when the request carries no L402 credential (it should be offered a challenge).
    Raises CredentialError saying why the token is malformed or unusable."""
    if not authorization:
        return None
    parsed = macaroons.parse_authorization(authorization)
    if parsed is None:
        return None
    token = macaroons.verify(*parsed)
    macaroons.check_scope(token, scope)
    return token


@dataclass(frozen=True)
class Verification:
    valid: bool
    resource: str | None = None
    merchant_id: str | None = None
    amount_sats: int | None = None
    payment_hash: str | None = None
    error: str | None = None


def verify_merchant_credential(merchant: Merchant, macaroon: str, preimage: str) -> Verification:
    """For a merchant's server that sells its own resources through challenges: is this
    macaroon + preimage a paid, unexpired token of this merchant? Every caveat counts,
    also those its holder added (an earlier expiry, a second resource)."""
    try:
        token = macaroons.verify(macaroon, preimage)
    except CredentialError as exc:
        return Verification(valid=False, error=str(exc))
    facts = dict(
        resource=token.first(macaroons.RESOURCE)
        or token.first(macaroons.CONTENT)
        or token.first(macaroons.PROXY),
        merchant_id=token.first(macaroons.MERCHANT),
        amount_sats=token.amount_sats,
        payment_hash=token.payment_hash,
    )
    try:
        macaroons.check_without_request(token, merchant.public_id)
    except CredentialError as exc:
        return Verification(valid=False, error=str(exc), **facts)
    return Verification(valid=True, **facts)


def verify_merchant_payment(merchant: Merchant, credential: str) -> Verification:
    """The same question for an MPP credential (a merchant challenge's `mppChallenge`,
    paid): issued here for this merchant, paid, and not expired."""
    try:
        paid = mpp.verify(credential.strip())
    except CredentialError as exc:
        return Verification(valid=False, error=str(exc))
    facts = dict(
        resource=paid.resource,
        merchant_id=paid.merchant,
        amount_sats=paid.amount_sats,
        payment_hash=paid.payment_hash,
    )
    try:
        mpp.check(paid, paid.resource, merchant.public_id)
    except CredentialError as exc:
        return Verification(valid=False, error=str(exc), **facts)
    return Verification(valid=True, **facts)


def bundle_scopes(items: list[PaidContent], method: str, path: str) -> list[RequestScope]:
    """What a bundle's token must open: every item of it, by this request."""
    return [replace(content_offer(item).scope, method=method, path=path) for item in items]
