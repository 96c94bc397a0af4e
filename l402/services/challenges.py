"""Issuing L402 challenges: an invoice and the macaroon its preimage unlocks, for any offer
or for a merchant's own resource (idempotent per key for a minute); listing them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from checkout.models import Merchant
from config.problems import Problem
from lightning import services as lightning
from lightning.backends.base import NodeError
from lightning.models import Invoice
from wallets import services as wallets

from .. import macaroons, mpp
from ..models import L402Challenge
from .offers import PURPOSE, Offer

IDEMPOTENCY_WINDOW = timedelta(seconds=60)


def issue_challenge(offer: Offer, idempotency_key: str | None = None) -> L402Challenge:
    """An invoice for the offer and the token its preimage unlocks.

    The node is asked first; the invoice and the challenge are then written in one short
    transaction. With an `idempotency_key`, that transaction locks the merchant and looks
    for a challenge made with the key in the last minute: if a concurrent request made one,
    nothing is written and that one is returned."""
    caveats = []
    if offer.merchant is not None:
        caveats.append((macaroons.MERCHANT, offer.merchant.public_id))
    caveats += offer.caveats
    caveats.append((macaroons.AMOUNT, str(offer.price_sats)))
    caveats.append((macaroons.EXPIRES, str(int(time.time()) + settings.L402_TOKEN_TTL_SECONDS)))

    def record(invoice):
        if idempotency_key:
            Merchant.objects.select_for_update().filter(pk=offer.merchant.pk).first()
            earlier = _challenge_with_key(offer.merchant, idempotency_key)
            if earlier is not None:
                raise _MadeMeanwhile(earlier)
        wallets.follow_invoice(invoice, offer.merchant)
        return L402Challenge.objects.create(
            merchant=offer.merchant,
            invoice=invoice,
            kind=offer.kind,
            resource=offer.resource[:500],
            proxy=offer.proxy,
            price_sats=offer.price_sats,
            description=offer.description[:640],
            macaroon=macaroons.mint(invoice.payment_hash, caveats),
            idempotency_key=idempotency_key,
        )

    try:
        return lightning.create_invoice(
            offer.price_sats * 1000,
            memo=(offer.description or offer.resource)[:640],
            expiry_seconds=settings.L402_INVOICE_EXPIRY_SECONDS,
            purpose=PURPOSE,
            then=record,
        )
    except _MadeMeanwhile as made:
        return made.challenge
    except NodeError as exc:
        raise Problem(503, "node_unavailable", f"the Lightning node did not answer: {exc}") from exc


class _MadeMeanwhile(Exception):
    """A concurrent request with the same idempotency key made its challenge first (raised
    to roll back this request's invoice)."""

    def __init__(self, challenge: L402Challenge):
        self.challenge = challenge


def _challenge_with_key(merchant: Merchant, idempotency_key: str) -> L402Challenge | None:
    return (
        L402Challenge.objects.select_related("invoice")
        .filter(
            merchant=merchant,
            idempotency_key=idempotency_key,
            created_at__gte=timezone.now() - IDEMPOTENCY_WINDOW,
        )
        .order_by("-created_at")
        .first()
    )


def create_merchant_challenge(
    merchant: Merchant,
    resource: str,
    price_sats: int,
    description: str = "",
    idempotency_key: str | None = None,
) -> L402Challenge:
    """A challenge for a merchant's own resource; the merchant's server checks the
    credential with `verify_merchant_credential`. A repeated idempotency key within a
    minute returns the first challenge."""
    offer = Offer(
        kind=L402Challenge.Kind.RESOURCE,
        resource=resource,
        price_sats=price_sats,
        caveats=[(macaroons.RESOURCE, resource)],
        merchant=merchant,
        description=description,
    )
    earlier = _challenge_with_key(merchant, idempotency_key) if idempotency_key else None
    if earlier is None:
        # No lock is held while the node is asked; issue_challenge checks again under the
        # merchant's lock before it writes, so two retries cannot both make a challenge.
        earlier = issue_challenge(offer, idempotency_key=idempotency_key)
    if (earlier.resource, earlier.price_sats, earlier.description) != (
        resource,
        price_sats,
        description,
    ):
        raise Problem(
            409,
            "idempotency_key_reused",
            "this idempotency key was used in the last minute for a different challenge",
        )
    return earlier


def payment_challenge_string(challenge: L402Challenge, resource: str | None = None) -> str:
    """The same offer as a `Payment` challenge (MPP, Lightning charge): the same invoice,
    for the same resource (`resource`: the offer's, which the stored one may shorten) and
    merchant, good for as long as the L402 token."""
    expires = next(
        int(caveat.partition("=")[2])
        for caveat in challenge.caveats
        if caveat.partition("=")[0] == macaroons.EXPIRES
    )
    offered = mpp.Offered(
        bolt11=challenge.invoice.bolt11,
        payment_hash=challenge.invoice.payment_hash,
        amount_sats=challenge.price_sats,
        resource=resource or challenge.resource,
        merchant=challenge.merchant.public_id if challenge.merchant_id else None,
        description=challenge.description,
    )
    return mpp.challenge_header(offered, datetime.fromtimestamp(expires, UTC), mpp.realm())


def list_challenges(merchant: Merchant, status: str | None):
    challenges = (
        L402Challenge.objects.filter(merchant=merchant)
        .select_related("invoice", "proxy")
        .order_by("-created_at", "-pk")
    )
    now = timezone.now()
    if status == L402Challenge.Status.PAID:
        challenges = challenges.filter(invoice__state=Invoice.State.PAID)
    elif status == L402Challenge.Status.PENDING:
        challenges = challenges.filter(
            invoice__state=Invoice.State.OPEN, invoice__expires_at__gt=now
        )
    elif status == L402Challenge.Status.EXPIRED:
        challenges = challenges.exclude(invoice__state=Invoice.State.PAID).exclude(
            invoice__state=Invoice.State.OPEN, invoice__expires_at__gt=now
        )
    return challenges
