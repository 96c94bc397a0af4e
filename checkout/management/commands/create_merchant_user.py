import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from checkout.models import Merchant
from checkout.staff import MERCHANT_STAFF_GROUP, create_merchant_user


class Command(BaseCommand):
    help = (
        "Create a staff user who administers one merchant at /admin/ (its products, "
        "checkout invoices and API keys). Without --password, a password is generated and "
        "printed alone on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--merchant", required=True, help="The merchant's id, mch_...")
        parser.add_argument("--email", default="")
        parser.add_argument("--password", default="")

    def handle(self, *args, username, merchant, email, password, **options):
        shop = Merchant.objects.filter(public_id=merchant).first()
        if shop is None:
            raise CommandError(f"No merchant {merchant}.")
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"A user named {username} already exists.")
        generated = not password
        password = password or secrets.token_urlsafe(18)
        create_merchant_user(username, shop, password, email)
        self.stdout.write(
            f"Created staff user {username} of {shop.name} ({shop.public_id}) "
            f"in the group {MERCHANT_STAFF_GROUP!r}."
        )
        if generated:
            self.stdout.write("Its password, shown only now:")
            self.stdout.write(password)
