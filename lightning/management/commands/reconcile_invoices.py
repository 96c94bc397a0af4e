from django.core.management.base import BaseCommand, CommandError

from lightning import services
from lightning.backends.base import NodeError


class Command(BaseCommand):
    help = (
        "Ask the node about open and accepted hold invoices (what the settlement stream "
        "never carries), "
        "or with --all about every open invoice, and apply what it says."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--all", action="store_true", help="every open (and recently expired) invoice"
        )

    def handle(self, *args, **options):
        try:
            counts = services.reconcile_invoices(full=options["all"])
        except NodeError as exc:
            raise CommandError(f"the node did not answer: {exc}") from exc
        self.stdout.write(
            f"checked {counts['checked']}, paid {counts['paid']}, accepted "
            f"{counts['accepted']}, canceled {counts['canceled']}, lookups failed "
            f"{counts['errors']}"
        )
