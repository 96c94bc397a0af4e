"""What the gateway tells merchants: the sale notices' outbox (the daily summary needs no
table of its own: `Merchant.daily_summary_sent_on` is its claim)."""

from django.db import models


class SaleNotice(models.Model):
    """An email owed to the merchant about one sale, written in the transaction that marks
    the invoice paid: a crash cannot lose it, and a replayed payment cannot owe it twice
    (one per invoice). `sent_at` is set when a sender claims it, before the email goes out,
    and cleared again when the send fails."""

    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="sale_notices"
    )
    invoice = models.OneToOneField(
        "lightning.Invoice", on_delete=models.CASCADE, related_name="sale_notice"
    )
    due_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The sweep's unsent notices: a handful beside every sale ever notified.
            models.Index(
                fields=["due_at"],
                condition=models.Q(sent_at__isnull=True),
                name="notifications_sales_unsent",
            ),
        ]

    def __str__(self):
        return f"sale notice for invoice {self.invoice_id} ({'sent' if self.sent_at else 'due'})"
