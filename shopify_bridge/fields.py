"""A text field encrypted at rest, for the Shopify secrets we must read back (the Admin API
access token, the webhook signing secret): unlike API keys they cannot be hashed.

Fernet (AES-128-CBC + HMAC-SHA256) with a key from SHOPIFY_SECRETS_KEY, or derived from
SECRET_KEY when that is empty: changing the key makes stored secrets unreadable (the
merchant enters them again), so set it explicitly in production.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import models


@lru_cache(maxsize=4)
def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(f"zapgate shopify secrets:{secret}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _current() -> Fernet:
    return _fernet(settings.SHOPIFY_SECRETS_KEY or settings.SECRET_KEY)


class EncryptedTextField(models.TextField):
    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            return _current().decrypt(value.encode()).decode()
        except InvalidToken:
            return ""  # encrypted under another key: unreadable, so treated as not set

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return _current().encrypt(value.encode()).decode()


def mask(secret: str) -> str:
    """What may be shown of a secret: its last four characters."""
    if not secret:
        return ""
    return "…" + secret[-4:] if len(secret) > 8 else "…"
