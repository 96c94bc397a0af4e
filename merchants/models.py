from django.db import models

from checkout.models import Merchant
from config.fields import EncryptedTextField


class NwcSecretField(EncryptedTextField):
    """A NIP-47 connection string (it holds a spending key), encrypted under NWC_SECRETS_KEY."""

    purpose = "nwc"
    key_setting = "NWC_SECRETS_KEY"


class NwcConnection(models.Model):
    """A merchant's Nostr Wallet Connect connection. The string is kept encrypted; what is
    shown (the wallet's pubkey, relays, address) is kept beside it."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, related_name="nwc_connection"
    )
    connection_string = NwcSecretField()
    wallet_pubkey = models.CharField(max_length=64)
    relays = models.JSONField(default=list)
    lud16 = models.CharField(max_length=320, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"NWC wallet {self.wallet_pubkey[:12]}… of {self.merchant}"
