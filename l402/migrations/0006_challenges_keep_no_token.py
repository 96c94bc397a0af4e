"""Challenges keep the token's id and caveats instead of the token: the stored macaroon
(next to the paid invoice's preimage) was a working credential for anyone who reads the
database. The token is made again from these parts with the server secret."""

import base64

from django.db import migrations, models
from pymacaroons.serializers.binary_serializer import BinarySerializer


def keep_parts(apps, schema_editor):
    L402Challenge = apps.get_model("l402", "L402Challenge")
    for challenge in L402Challenge.objects.exclude(macaroon="").iterator():
        macaroon = BinarySerializer().deserialize_raw(base64.b64decode(challenge.macaroon))
        # Identifier: uint16 version, 32-byte payment hash, 32-byte token id.
        challenge.token_id = macaroon.identifier[34:66].hex()
        challenge.caveats = [
            caveat.caveat_id_bytes.decode() for caveat in macaroon.first_party_caveats()
        ]
        challenge.macaroon = ""
        challenge.save(update_fields=["token_id", "caveats", "macaroon"])


class Migration(migrations.Migration):
    dependencies = [
        ("l402", "0005_one_time_keys_outlive_proxies_constraints"),
    ]

    operations = [
        migrations.AddField(
            model_name="l402challenge",
            name="token_id",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="l402challenge",
            name="caveats",
            field=models.JSONField(default=list),
        ),
        # Not reversible: going back leaves old challenges without a stored token.
        migrations.RunPython(keep_parts, migrations.RunPython.noop),
    ]
