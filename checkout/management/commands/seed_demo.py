from django.core.management.base import BaseCommand

from checkout.services import seed_demo
from checkout.staff import seed_demo_staff


class Command(BaseCommand):
    help = (
        "Create the demo merchant and products (once); print its merchant site login (with a "
        "fresh password) and, last, a fresh demo admin key."
    )

    def handle(self, *args, **options):
        merchant, key = seed_demo()
        from orders.services import seed_operators

        seed_operators(merchant)  # the Bitrefill seed's products, for its curl examples
        username, password = seed_demo_staff(merchant)
        self.stdout.write(f"Demo merchant {merchant.name} ({merchant.public_id}).")
        self.stdout.write(f"login {username} {password}")
        self.stdout.write(key)
