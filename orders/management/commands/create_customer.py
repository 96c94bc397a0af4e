from django.core.management.base import BaseCommand, CommandError

from checkout.models import Merchant
from orders.services import create_customer


class Command(BaseCommand):
    help = (
        "Issue Bitrefill-API credentials to a reseller of a merchant; prints API_KEY:API_SECRET "
        "(the secret is shown once)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--merchant", required=True, help="The merchant's id (mch_...).")

    def handle(self, *args, name, merchant, **options):
        found = Merchant.objects.filter(public_id=merchant).first()
        if found is None:
            raise CommandError(f"No merchant {merchant}.")
        customer, secret = create_customer(found, name)
        self.stdout.write(f"Customer {customer.name} ({customer.public_id}) of {found.name}.")
        self.stdout.write(f"{customer.api_key}:{secret}")
