from django.core.management.base import BaseCommand, CommandError

from shopify_bridge.catalog import sync_catalog
from shopify_bridge.models import ShopifyStore
from shopify_bridge.shopify import ShopifyError

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Copy a Shopify store's active products and variants from its Admin API."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The store's slug.")

    def handle(self, slug, **options):
        store = ShopifyStore.objects.filter(slug=slug).first()
        if store is None:
            raise CommandError(f"No Shopify store {slug!r}.")
        interactive = self.stdout.isatty()
        start = "\r" if interactive else ""

        def progress(done: int, total: int) -> None:
            filled = BAR_WIDTH * done // total if total else BAR_WIDTH
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            # On a terminal the bar redraws in place; in a log, one line per page.
            self.stdout.write(
                f"{start}[{bar}] {done}/{total} products", ending="" if interactive else "\n"
            )
            self.stdout.flush()

        try:
            result = sync_catalog(store, progress=progress)
        except ShopifyError as exc:
            if interactive:
                self.stdout.write("")
            raise CommandError(f"Sync of {slug} failed: {exc}") from exc
        if interactive:
            self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(
                f"Synced {result.products} products and {result.variants} variants of "
                f"{store.name} in {result.pages} pages."
            )
        )
