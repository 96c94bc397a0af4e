"""Orders keep the L402 token's id and caveats instead of the token: the stored macaroon
(next to the paid invoice's preimage) was a working credential for anyone who reads the
database. The token is made again from these parts with the server secret (as l402's
challenges do since l402 0006)."""

import base64

from django.db import migrations, models
from pymacaroons.serializers.binary_serializer import BinarySerializer


def keep_parts(apps, schema_editor):
    ShopifyOrder = apps.get_model("shopify_bridge", "ShopifyOrder")
    for order in ShopifyOrder.objects.exclude(macaroon="").iterator():
        macaroon = BinarySerializer().deserialize_raw(base64.b64decode(order.macaroon))
        # Identifier: uint16 version, 32-byte payment hash, 32-byte token id.
        order.token_id = macaroon.identifier[34:66].hex()
        order.caveats = [
            caveat.caveat_id_bytes.decode() for caveat in macaroon.first_party_caveats()
        ]
        order.macaroon = ""
        order.save(update_fields=["token_id", "caveats", "macaroon"])


class Migration(migrations.Migration):
    dependencies = [
        ("shopify_bridge", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="shopifyorder",
            name="token_id",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="shopifyorder",
            name="caveats",
            field=models.JSONField(default=list),
        ),
        # Not reversible: going back leaves old orders without a stored token.
        migrations.RunPython(keep_parts, migrations.RunPython.noop),
    ]
