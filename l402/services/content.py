"""Paywalled content: what is published, the offer of one item or of a bundle of items,
and publishing."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from checkout.models import Merchant
from config.money import MAX_SATS
from config.problems import Problem

from .. import macaroons
from ..macaroons import RequestScope
from ..models import L402Challenge, PaidContent
from .offers import Offer, check_sellable


def published_content():
    return PaidContent.objects.filter(is_published=True).select_related("merchant")


def get_content(slug: str) -> PaidContent:
    item = published_content().filter(slug=slug).first()
    if item is None:
        raise Problem(404, "not_found", f"there is no published content {slug!r}")
    return item


def content_offer(item: PaidContent) -> Offer:
    return Offer(
        kind=L402Challenge.Kind.CONTENT,
        resource=f"content/{item.slug}",
        price_sats=item.price_sats,
        caveats=[(macaroons.CONTENT, item.slug)],
        merchant=item.merchant,
        description=item.title,
        scope=RequestScope(merchant=item.merchant.public_id, content=item.slug),
    )


def bundle_items(slugs: list[str]) -> list[PaidContent]:
    unique = list(dict.fromkeys(slugs))
    found = {item.slug: item for item in published_content().filter(slug__in=unique)}
    missing = [slug for slug in unique if slug not in found]
    if missing:
        raise Problem(
            404, "not_found", f"there is no published content {', '.join(map(repr, missing))}"
        )
    items = [found[slug] for slug in unique]
    if len({item.merchant_id for item in items}) > 1:
        raise Problem(
            400,
            "validation_error",
            "a bundle's items must all come from one merchant",
            {"slugs": ["Items from different merchants cannot be bundled."]},
        )
    return items


def bundle_offer(items: list[PaidContent]) -> Offer:
    slugs = ",".join(item.slug for item in items)
    for item in items:
        check_sellable(item.price_sats, f"content/{item.slug}")
    price = sum(item.price_sats for item in items)
    if price > MAX_SATS:
        raise Problem(
            400,
            "validation_error",
            f"these items cost {price} sats together, more than {MAX_SATS}",
            {"slugs": [f"Together these items cost more than {MAX_SATS} sats."]},
        )
    return Offer(
        kind=L402Challenge.Kind.BUNDLE,
        resource=f"bundle/{slugs}",
        price_sats=price,
        caveats=[(macaroons.CONTENT, slugs)],
        merchant=items[0].merchant,
        description=f"Bundle of {len(items)} items",
    )


def create_content(merchant: Merchant, **fields) -> PaidContent:
    try:
        with transaction.atomic():
            return PaidContent.objects.create(merchant=merchant, **fields)
    except IntegrityError:
        raise Problem(
            409,
            "slug_taken",
            f"the slug {fields['slug']!r} is taken; choose another",
            {"slug": ["This slug is taken."]},
        ) from None
