from django.core.management.base import BaseCommand

from checkout.services import seed_demo


class Command(BaseCommand):
    help = "Create the demo merchant and products (once) and print a fresh demo admin key."

    def handle(self, *args, **options):
        merchant, key = seed_demo()
        from orders.services import seed_operators

        seed_operators(merchant)  # the Bitrefill seed's products, for its curl examples
        self.stdout.write(f"Demo merchant {merchant.name} ({merchant.public_id}).")
        self.stdout.write(key)
