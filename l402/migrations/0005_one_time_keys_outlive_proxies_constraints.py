"""Second step of 0004, in its own transaction (PostgreSQL cannot alter a table with
pending deferred-constraint checks from the rows 0004 updated)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("l402", "0004_one_time_keys_outlive_proxies"),
    ]

    operations = [
        migrations.AlterField(
            model_name="onetimekey",
            name="merchant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="l402_one_time_keys",
                to="checkout.merchant",
            ),
        ),
        migrations.AlterField(
            model_name="onetimekey",
            name="proxy",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="one_time_keys",
                to="l402.proxy",
            ),
        ),
    ]
