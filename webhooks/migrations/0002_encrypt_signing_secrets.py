# Signing secrets were stored as plain text: encrypt them at rest, rows already there too.

from django.db import migrations

import webhooks.models

MODELS = ("webhookendpoint", "merchantwebhooksecret")
COLUMNS = ("secret", "previous_secret")
PLAIN_PREFIX = "whsec_"


def _rewrite(apps, schema_editor, convert):
    """Apply `convert(field, value)` to each stored secret, with plain SQL: the model's
    field would try to decrypt what is still plain text."""
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    for name in MODELS:
        model = apps.get_model("webhooks", name)
        table = quote(model._meta.db_table)
        fields = [model._meta.get_field(column) for column in COLUMNS]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, {', '.join(quote(c) for c in COLUMNS)} FROM {table}")
            rows = cursor.fetchall()
            for pk, *values in rows:
                new = [convert(field, value) for field, value in zip(fields, values)]
                if new != list(values):
                    assignments = ", ".join(f"{quote(c)} = %s" for c in COLUMNS)
                    cursor.execute(
                        f"UPDATE {table} SET {assignments} WHERE id = %s", [*new, pk]
                    )


def encrypt(apps, schema_editor):
    _rewrite(
        apps,
        schema_editor,
        lambda field, value: field.encrypt(value) if value.startswith(PLAIN_PREFIX) else value,
    )


def decrypt(apps, schema_editor):
    _rewrite(
        apps,
        schema_editor,
        lambda field, value: value if not value or value.startswith(PLAIN_PREFIX)
        else field.decrypt(value),
    )


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='merchantwebhooksecret',
            name='previous_secret',
            field=webhooks.models.SigningSecretField(blank=True),
        ),
        migrations.AlterField(
            model_name='merchantwebhooksecret',
            name='secret',
            field=webhooks.models.SigningSecretField(),
        ),
        migrations.AlterField(
            model_name='webhookendpoint',
            name='previous_secret',
            field=webhooks.models.SigningSecretField(blank=True),
        ),
        migrations.AlterField(
            model_name='webhookendpoint',
            name='secret',
            field=webhooks.models.SigningSecretField(),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
