"""Refunds follow the wallets' outgoing payments (inside the transaction that ends each),
and register their webhook event types."""

from django.dispatch import receiver

from wallets.signals import outgoing_payment_ended

from . import events, services

events.register()


@receiver(outgoing_payment_ended, dispatch_uid="refunds.follow_payout")
def follow_payout(sender, payment, **kwargs):
    services.payment_ended(payment)
