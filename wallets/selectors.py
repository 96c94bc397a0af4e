"""Reads of wallets: payments, history and statistics (a merchant sees only its own)."""

import hashlib
from collections import defaultdict

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMonth

from .models import Payment, Wallet

TRUNC = {"hour": TruncHour, "day": TruncDay, "month": TruncMonth}
LABEL = {"hour": "%Y-%m-%dT%H:00:00Z", "day": "%Y-%m-%d", "month": "%Y-%m"}


def wallet_of(merchant) -> Wallet | None:
    return Wallet.objects.filter(merchant=merchant, owner=Wallet.Owner.MERCHANT).first()


def payments_of(wallet: Wallet | None, status: str | None = None):
    rows = Payment.objects.filter(wallet=wallet).select_related("wallet")
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("-created_at", "-id")


def payment_of(wallet: Wallet | None, checking_id: str) -> Payment | None:
    """The wallet's payment with this checking id (its payment hash): the live one, or the
    latest attempt when every attempt failed."""
    return _live_or_latest(
        Payment.objects.filter(wallet=wallet, payment_hash=checking_id.lower()).select_related(
            "wallet", "invoice"
        )
    )


def any_payment(checking_id: str) -> Payment | None:
    """Asked without a key (LNbits allows it): paid or not, no details."""
    return _live_or_latest(Payment.objects.filter(payment_hash=checking_id.lower()))


def _live_or_latest(rows) -> Payment | None:
    rows = rows.order_by("-id")
    return rows.exclude(status=Payment.Status.FAILED).first() or rows.first()


def payment_of_preimage(wallet: Wallet, preimage: str) -> Payment | None:
    return payment_of(wallet, hashlib.sha256(bytes.fromhex(preimage)).hexdigest())


def _successful(wallet: Wallet | None):
    return Payment.objects.filter(wallet=wallet, status=Payment.Status.SUCCESS)


def history(wallet: Wallet, group: str) -> list[dict]:
    """[{date, income, spending}] in sats (spending includes fees), newest first."""
    rows = (
        _successful(wallet)
        .annotate(period=TRUNC[group]("settled_at"))
        .values("period", "direction")
        .annotate(amount=Sum("amount_msat"), fees=Sum("fee_msat"))
    )
    totals = defaultdict(lambda: {"income": 0, "spending": 0})
    for row in rows:
        if row["direction"] == Payment.Direction.IN:
            totals[row["period"]]["income"] += row["amount"]
        else:
            totals[row["period"]]["spending"] += row["amount"] + row["fees"]
    return [
        {
            "date": period.strftime(LABEL[group]),
            "income": sums["income"] // 1000,
            "spending": sums["spending"] // 1000,
        }
        for period, sums in sorted(totals.items(), reverse=True)
    ]


def count_by_tag(wallet: Wallet) -> list[dict]:
    rows = _successful(wallet).values("tag").annotate(count=Count("id")).order_by("-count", "tag")
    return [{"tag": row["tag"] or None, "count": row["count"]} for row in rows]


def wallet_stats(merchant) -> list[dict]:
    out = []
    for wallet in Wallet.objects.filter(merchant=merchant, owner=Wallet.Owner.MERCHANT):
        sums = _successful(wallet).aggregate(
            income=Sum("amount_msat", filter=Q(direction=Payment.Direction.IN)),
            spent=Sum("amount_msat", filter=Q(direction=Payment.Direction.OUT)),
            fees=Sum("fee_msat", filter=Q(direction=Payment.Direction.OUT)),
            count=Count("id"),
        )
        out.append(
            {
                "wallet_id": wallet.public_id,
                "wallet_name": wallet.name,
                "total_income": (sums["income"] or 0) // 1000,
                "total_spending": ((sums["spent"] or 0) + (sums["fees"] or 0)) // 1000,
                "payment_count": sums["count"],
            }
        )
    return out


def daily(wallet: Wallet) -> list[dict]:
    """[{date, count, total}]: successful payments per day, total = income - spending (sats),
    with LNbits 1.x's split (count_in, count_out, balance_in, balance_out, fee)."""
    rows = (
        _successful(wallet)
        .annotate(day=TruncDay("settled_at"))
        .values("day", "direction")
        .annotate(count=Count("id"), amount=Sum("amount_msat"), fees=Sum("fee_msat"))
    )
    days = defaultdict(lambda: {"count_in": 0, "count_out": 0, "in": 0, "out": 0, "fee": 0})
    for row in rows:
        day = days[row["day"]]
        if row["direction"] == Payment.Direction.IN:
            day["count_in"] += row["count"]
            day["in"] += row["amount"]
        else:
            day["count_out"] += row["count"]
            day["out"] += row["amount"] + row["fees"]
            day["fee"] += row["fees"]
    return [
        {
            "date": day.strftime("%Y-%m-%d"),
            "count": sums["count_in"] + sums["count_out"],
            "total": (sums["in"] - sums["out"]) // 1000,
            "count_in": sums["count_in"],
            "count_out": sums["count_out"],
            "balance_in": sums["in"] // 1000,
            "balance_out": sums["out"] // 1000,
            "fee": sums["fee"],
        }
        for day, sums in sorted(days.items(), reverse=True)
    ]
