"""Wallets start with what merchants were paid before they existed: every invoice a merchant
sold (checkout, L402 challenges and one-time keys, Shopify orders) gets its wallet payment,
and each paid one its credit, so no balance starts at zero that should not."""

from django.db import migrations
from django.db.models import Sum

STATUS = {"paid": "success", "open": "pending", "accepted": "pending"}


def credit(apps, schema_editor):
    Wallet = apps.get_model("wallets", "Wallet")
    Payment = apps.get_model("wallets", "Payment")
    LedgerEntry = apps.get_model("wallets", "LedgerEntry")
    Merchant = apps.get_model("checkout", "Merchant")
    sources = [
        (apps.get_model("checkout", "CheckoutInvoice"), "merchant_id"),
        (apps.get_model("l402", "L402Challenge"), "merchant_id"),
        (apps.get_model("l402", "OneTimeKey"), "merchant_id"),
        (apps.get_model("shopify_bridge", "ShopifyOrder"), "store__merchant_id"),
    ]
    wallets = {}
    for model, merchant_field in sources:
        rows = (
            model.objects.filter(**{f"{merchant_field}__isnull": False})
            .select_related("invoice")
            .values_list(merchant_field, "invoice_id")
        )
        for merchant_id, invoice_id in rows.iterator(chunk_size=2000):
            if merchant_id not in wallets:
                merchant = Merchant.objects.get(pk=merchant_id)
                wallets[merchant_id] = Wallet.objects.get_or_create(
                    merchant=merchant, defaults={"name": merchant.name}
                )[0]
            _follow(Payment, LedgerEntry, wallets[merchant_id], invoice_id, apps)
    for wallet in wallets.values():
        total = LedgerEntry.objects.filter(wallet=wallet).aggregate(t=Sum("amount_msat"))["t"]
        Wallet.objects.filter(pk=wallet.pk).update(balance_msat=total or 0)


def _follow(Payment, LedgerEntry, wallet, invoice_id, apps):
    Invoice = apps.get_model("lightning", "Invoice")
    invoice = Invoice.objects.get(pk=invoice_id)
    if Payment.objects.filter(invoice=invoice).exists():
        return
    paid = invoice.state == "paid"
    amount = (invoice.amount_paid_msat or invoice.amount_msat) if paid else invoice.amount_msat
    payment = Payment.objects.create(
        wallet=wallet,
        direction="in",
        status=STATUS.get(invoice.state, "failed"),
        payment_hash=invoice.payment_hash,
        bolt11=invoice.bolt11,
        amount_msat=amount,
        memo=invoice.memo,
        tag=invoice.purpose,
        invoice=invoice,
        preimage=invoice.preimage if paid else "",
        expires_at=invoice.expires_at,
        settled_at=invoice.paid_at,
    )
    if paid:
        LedgerEntry.objects.create(
            wallet=wallet, payment=payment, invoice=invoice, kind="credit", amount_msat=amount
        )


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0001_initial"),
        ("checkout", "0004_checkoutinvoice_webhook_url"),
        ("l402", "0007_remove_l402challenge_macaroon"),
        ("shopify_bridge", "0003_remove_shopifyorder_macaroon"),
        ("lightning", "0003_watcher_heartbeat_and_pending_reactions"),
    ]

    operations = [migrations.RunPython(credit, migrations.RunPython.noop)]
