from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from lightning.backends import get_backend
from lightning.backends.base import PaymentFailed


class Command(BaseCommand):
    help = "Pay a BOLT11 invoice issued by the dev node, as a buyer's wallet would."

    def add_arguments(self, parser):
        parser.add_argument("bolt11")

    def handle(self, *args, bolt11, **options):
        if settings.LIGHTNING_BACKEND != "devnode":
            raise CommandError("devnode_pay needs LIGHTNING_BACKEND=devnode")
        try:
            payment = get_backend().pay_invoice(bolt11)
        except PaymentFailed as exc:
            raise CommandError(f"payment failed: {exc}") from exc
        self.stdout.write(f"paymentHash {payment.payment_hash}")
        self.stdout.write(f"preimage {payment.preimage or '(held: settle the hold invoice)'}")
