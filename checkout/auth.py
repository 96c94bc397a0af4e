"""`X-Api-Key` authentication and the two key scopes, for every merchant endpoint.

A view that needs a merchant sets `authentication_classes = [ApiKeyAuthentication]` and
`permission_classes = [InvoiceKeyRequired]` (create invoices, read) or
`[AdminKeyRequired]` (everything). `request.merchant` is then the key's merchant.
"""

from datetime import timedelta

from django.utils import timezone
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication

from .models import ApiKey
from .selectors import active_api_key
from .services import hash_key

# last_used_at is written at most this often per key, so reads do not all become writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(BaseAuthentication):
    header = "HTTP_X_API_KEY"

    def raw_key(self, request) -> str:
        """The key from `X-Api-Key`; or from LNbits' `api-key` query parameter, on the views
        that serve LNbits' API (`accepts_api_key_query`) and only there: elsewhere a key in
        a URL would end up in logs for nothing."""
        raw = request.META.get(self.header, "").strip()
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if not raw and getattr(view, "accepts_api_key_query", False):
            raw = request.query_params.get("api-key", "").strip()
        return raw

    def authenticate(self, request):
        raw = self.raw_key(request)
        if not raw:
            return None
        key = active_api_key(hash_key(raw))
        if key is None:
            raise exceptions.AuthenticationFailed("The API key is unknown or revoked.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        request.merchant = key.merchant
        return (None, key)

    def authenticate_header(self, request):
        return "X-Api-Key"  # makes DRF answer 401 (not 403) when the key is missing


class InvoiceKeyRequired(permissions.BasePermission):
    """Any valid key: invoice keys and admin keys."""

    message = "An X-Api-Key header with an invoice or admin key is required."

    def has_permission(self, request, view):
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated(self.message)
        return True


class AdminKeyRequired(permissions.BasePermission):
    admin_only = True  # the OpenAPI document adds a 403 (config.schema)
    message = "This needs an admin key; an invoice key may only create invoices and read."

    def has_permission(self, request, view):
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated("An X-Api-Key header with an admin key is required.")
        return request.auth.kind == ApiKey.Kind.ADMIN
