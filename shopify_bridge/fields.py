"""The Shopify secrets we must read back (the Admin API access token, the webhook signing
secret), encrypted at rest under SHOPIFY_SECRETS_KEY (see config.fields)."""

from config import fields


class EncryptedTextField(fields.EncryptedTextField):
    purpose = "shopify"
    key_setting = "SHOPIFY_SECRETS_KEY"


def mask(secret: str) -> str:
    """What may be shown of a secret: its last four characters."""
    if not secret:
        return ""
    return "…" + secret[-4:] if len(secret) > 8 else "…"
