"""Merchant staff: Django users who administer one merchant in the admin site."""

import secrets

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

from .models import Merchant, MerchantUser

MERCHANT_STAFF_GROUP = "Merchant staff"
# What a merchant's staff may do with their own merchant's rows (the admin scopes the rows).
# Checkout invoices are read-only; keys are revoked, not deleted; a product "deleted" with
# checkouts is archived.
MERCHANT_STAFF_PERMISSIONS = {
    "checkout.product": ("view", "add", "change", "delete"),
    "checkout.checkoutinvoice": ("view",),
    "checkout.apikey": ("view", "add", "change"),
    "webhooks.webhookendpoint": ("view", "add", "change", "delete"),
    "webhooks.webhookdelivery": ("view", "change"),
    "webhooks.webhookattempt": ("view",),
    "l402.paidcontent": ("view", "add", "change", "delete"),
    "l402.proxy": ("view", "add", "change", "delete"),
    "l402.proxyendpoint": ("view", "add", "change", "delete"),
    "l402.l402challenge": ("view",),
    # Refunds are made from a paid checkout's page; "change" reissues or withdraws a link.
    "refunds.refund": ("view", "change"),
    # Reseller orders: products (and their stock) are the staff's; orders are read-only.
    "orders.operator": ("view", "add", "change", "delete"),
    "orders.stockcode": ("view", "add", "change", "delete"),
    "orders.customer": ("view", "change"),
    "orders.order": ("view",),
}


def ensure_merchant_staff_group() -> Group:
    """The "Merchant staff" group with exactly its permissions (made or repaired)."""
    wanted = Q(pk__in=[])
    for label, actions in MERCHANT_STAFF_PERMISSIONS.items():
        app_label, model = label.split(".")
        # Permissions are made after migrate; make them now for a command run before that.
        create_permissions(apps.get_app_config(app_label), verbosity=0)
        wanted |= Q(
            content_type__app_label=app_label,
            codename__in=[f"{action}_{model}" for action in actions],
        )
    group, _ = Group.objects.get_or_create(name=MERCHANT_STAFF_GROUP)
    group.permissions.set(Permission.objects.filter(wanted))
    return group


@transaction.atomic
def create_merchant_user(username: str, merchant: Merchant, password: str, email: str = ""):
    """A staff user who administers `merchant` in the admin site, and nothing else."""
    user = get_user_model().objects.create_user(
        username=username, email=email, password=password, is_staff=True
    )
    MerchantUser.objects.create(user=user, merchant=merchant)
    user.groups.add(ensure_merchant_staff_group())
    return user


DEMO_STAFF_USERNAME = "demo"


@transaction.atomic
def seed_demo_staff(merchant: Merchant) -> tuple[str, str]:
    """The demo merchant's staff login for the merchant site, with a fresh random password
    (passwords are stored hashed, so each `make run` sets and prints a new one, as it does
    the demo key). Returns (username, password)."""
    password = secrets.token_urlsafe(12)
    user = get_user_model().objects.filter(username=DEMO_STAFF_USERNAME).first()
    if user is None:
        create_merchant_user(DEMO_STAFF_USERNAME, merchant, password)
    else:
        link = MerchantUser.objects.filter(user=user).first()
        if link is None or link.merchant_id != merchant.pk:
            raise ValueError(
                f"The user {DEMO_STAFF_USERNAME!r} exists and is not the demo merchant's staff."
            )
        user.set_password(password)
        user.is_active = True
        user.save(update_fields=["password", "is_active"])
    return DEMO_STAFF_USERNAME, password
