"""The sales summary at the top of the merchant admin's index page."""

from django import template
from django.utils import timezone

from ..selectors import merchant_of, paid_summary

register = template.Library()


@register.inclusion_tag("admin/checkout/sales_summary.html", takes_context=True)
def sales_summary(context):
    user = context["request"].user
    merchant = merchant_of(user)
    if merchant is None and not user.is_superuser:
        return {"summary": None}
    return {
        "summary": paid_summary(merchant),
        "merchant": merchant,
        "time_zone": timezone.get_current_timezone_name(),
    }


@register.filter
def sats(value: int) -> str:
    return f"{value:,} sats"
