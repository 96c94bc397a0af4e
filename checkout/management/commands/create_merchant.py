from django.core.management.base import BaseCommand

from checkout.services import create_merchant


class Command(BaseCommand):
    help = "Create a merchant; its new admin API key is printed alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--email", default="")

    def handle(self, *args, name, email, **options):
        merchant, key = create_merchant(name, email)
        self.stdout.write(f"Created merchant {merchant.name} ({merchant.public_id}).")
        self.stdout.write("Its admin API key, shown only now:")
        self.stdout.write(key)
