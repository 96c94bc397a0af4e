"""Second step of 0002, in its own transaction: drop the stored tokens."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("shopify_bridge", "0002_orders_keep_no_token"),
    ]

    operations = [
        migrations.RemoveField(model_name="shopifyorder", name="macaroon"),
    ]
