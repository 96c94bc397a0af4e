"""Second step of 0006, in its own transaction: drop the stored tokens."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("l402", "0006_challenges_keep_no_token"),
    ]

    operations = [
        migrations.RemoveField(model_name="l402challenge", name="macaroon"),
    ]
