from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from lightning.backends import get_backend


class Command(BaseCommand):
    help = (
        "Mine blocks on the dev node's chain (held payments near their HTLC expiry are "
        "canceled, as a real node would); prints the new block height."
    )

    def add_arguments(self, parser):
        parser.add_argument("blocks", type=int, nargs="?", default=1)

    def handle(self, *args, blocks, **options):
        if settings.LIGHTNING_BACKEND != "devnode":
            raise CommandError("devnode_mine needs LIGHTNING_BACKEND=devnode")
        if blocks < 1:
            raise CommandError("mine at least one block")
        self.stdout.write(f"block height {get_backend().mine(blocks)}")
