"""A merchant's L402 numbers: challenges issued and paid, one-time keys, revenue by
resource and by proxy; and the paid content downloaded."""

from __future__ import annotations

from django.db.models import Count, Q, Sum

from checkout.models import Merchant
from lightning.models import Invoice

from .. import macaroons
from ..models import L402Challenge, OneTimeKey, PaidContent, Proxy


def l402_stats(merchant: Merchant) -> dict:
    paid = Q(invoice__state=Invoice.State.PAID)
    challenges = L402Challenge.objects.filter(merchant=merchant)
    totals = challenges.aggregate(
        issued=Count("pk"), paid=Count("pk", filter=paid), revenue=Sum("price_sats", filter=paid)
    )
    by_resource = (
        challenges.values("resource")
        .annotate(
            issued=Count("pk"),
            paid=Count("pk", filter=paid),
            revenue=Sum("price_sats", filter=paid),
        )
        .order_by("-revenue", "resource")
    )
    keys = OneTimeKey.objects.filter(merchant=merchant)  # also those of deleted proxies
    key_totals = keys.aggregate(
        issued=Count("pk"),
        paid=Count("pk", filter=paid),
        spent=Count("pk", filter=Q(spent_at__isnull=False)),
        revenue=Sum("price_sats", filter=paid),
    )
    proxies = Proxy.objects.filter(merchant=merchant).annotate(
        issued=Count("challenges", distinct=True),
        paid=Count("challenges", filter=Q(challenges__invoice__state="paid"), distinct=True),
    )
    challenge_revenue = dict(
        challenges.filter(paid, proxy__isnull=False)
        .values_list("proxy")
        .annotate(total=Sum("price_sats"))
    )
    key_revenue = {
        row["proxy"]: row
        for row in keys.values("proxy").annotate(
            sold=Count("pk", filter=paid), revenue=Sum("price_sats", filter=paid)
        )
    }
    by_proxy = []
    for proxy in proxies.order_by("name"):
        keys_row = key_revenue.get(proxy.pk, {})
        by_proxy.append(
            {
                "proxyId": proxy.proxy_id,
                "name": proxy.name,
                "challengesIssued": proxy.issued,
                "challengesPaid": proxy.paid,
                "oneTimeKeysPaid": keys_row.get("sold") or 0,
                "revenueSats": (challenge_revenue.get(proxy.pk) or 0)
                + (keys_row.get("revenue") or 0),
            }
        )
    return {
        "challengesIssued": totals["issued"],
        "challengesPaid": totals["paid"],
        "revenueSats": (totals["revenue"] or 0) + (key_totals["revenue"] or 0),
        "byResource": [
            {
                "resource": row["resource"],
                "challengesIssued": row["issued"],
                "challengesPaid": row["paid"],
                "revenueSats": row["revenue"] or 0,
            }
            for row in by_resource
        ],
        "byProxy": by_proxy,
        "oneTimeKeys": {
            "issued": key_totals["issued"],
            "paid": key_totals["paid"],
            "spent": key_totals["spent"],
            "revenueSats": key_totals["revenue"] or 0,
        },
    }


def download_stats(merchant: Merchant) -> dict:
    """What buyers paid to download here: each content item (bought alone or in a bundle)
    and the bundles. A download is a paid challenge; its token then opens the item as
    often as the buyer likes until it expires, and those reads are not counted (counting
    them would write on every paid read)."""
    paid = L402Challenge.objects.filter(merchant=merchant, invoice__state=Invoice.State.PAID)
    singles = {
        row["resource"]: (row["n"], row["total"])
        for row in paid.filter(kind=L402Challenge.Kind.CONTENT)
        .values("resource")
        .annotate(n=Count("pk"), total=Sum("price_sats"))
    }
    in_bundles: dict[str, int] = {}
    bundles = paid.filter(kind=L402Challenge.Kind.BUNDLE).only("caveats", "price_sats")
    bundle_count = bundle_revenue = 0
    for bundle in bundles.iterator():
        bundle_count += 1
        bundle_revenue += bundle.price_sats
        for caveat in bundle.caveats:
            condition, _, value = caveat.partition("=")
            if condition == macaroons.CONTENT:
                for slug in value.split(","):
                    in_bundles[slug] = in_bundles.get(slug, 0) + 1
    items = [
        {
            "slug": item.slug,
            "title": item.title,
            "priceSats": item.price_sats,
            "published": item.is_published,
            "downloads": alone[0] + in_bundles.get(item.slug, 0),
            "soldAlone": alone[0],
            "soldInBundles": in_bundles.get(item.slug, 0),
            "revenueSats": alone[1],
        }
        for item in PaidContent.objects.filter(merchant=merchant).order_by("slug")
        for alone in [singles.get(f"content/{item.slug}", (0, 0))]
    ]
    items.sort(key=lambda row: (-row["downloads"], row["slug"]))
    return {
        "totalDownloads": sum(row["downloads"] for row in items),
        "revenueSats": sum(row["revenueSats"] for row in items) + bundle_revenue,
        "items": items,
        "bundles": {"sold": bundle_count, "revenueSats": bundle_revenue},
    }
