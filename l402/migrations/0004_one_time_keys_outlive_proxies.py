"""One-time keys keep what they sold when their proxy is deleted: the merchant and the
proxy's public id are copied onto each key, and the key no longer cascades with the proxy."""

import django.db.models.deletion
from django.db import migrations, models


def copy_seller(apps, schema_editor):
    OneTimeKey = apps.get_model("l402", "OneTimeKey")
    for key in OneTimeKey.objects.select_related("proxy").iterator():
        key.merchant_id = key.proxy.merchant_id
        key.proxy_public_id = key.proxy.proxy_id
        key.save(update_fields=["merchant", "proxy_public_id"])


class Migration(migrations.Migration):
    dependencies = [
        ("checkout", "0001_initial"),
        ("l402", "0003_price_bounds"),
    ]

    operations = [
        migrations.AddField(
            model_name="onetimekey",
            name="merchant",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="l402_one_time_keys",
                to="checkout.merchant",
            ),
        ),
        migrations.AddField(
            model_name="onetimekey",
            name="proxy_public_id",
            field=models.CharField(db_index=True, default="", max_length=80),
            preserve_default=False,
        ),
        migrations.RunPython(copy_seller, migrations.RunPython.noop),
    ]
