"""A text field encrypted at rest, for secrets we must read back (a Shopify access token,
a webhook signing secret): unlike API keys they cannot be hashed.

Fernet (AES-128-CBC + HMAC-SHA256). Each use names its purpose and the setting that holds
its key; an empty setting derives the key from SECRET_KEY. Changing the key makes the
stored secrets unreadable (read back as empty), so set it explicitly in production.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import models


@lru_cache(maxsize=8)
def _fernet(purpose: str, secret: str) -> Fernet:
    digest = hashlib.sha256(f"zapgate {purpose} secrets:{secret}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class EncryptedTextField(models.TextField):
    """Subclass it, naming `purpose` (part of the key derivation) and `key_setting`."""

    purpose: str
    key_setting: str

    def fernet(self) -> Fernet:
        return _fernet(self.purpose, getattr(settings, self.key_setting) or settings.SECRET_KEY)

    def encrypt(self, value: str) -> str:
        return self.fernet().encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The plaintext, or "" when the token was made under another key."""
        try:
            return self.fernet().decrypt(token.encode()).decode()
        except InvalidToken:
            return ""

    def from_db_value(self, value, expression, connection):
        return self.decrypt(value) if value else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return self.encrypt(value) if value else value
