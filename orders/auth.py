"""HTTP Basic for the Bitrefill-compatible API: `curl -u API_KEY:API_SECRET`, as the seed."""

import base64
import binascii

from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication

from . import services
from .models import Customer


class CustomerBasicAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise exceptions.AuthenticationFailed(
                "The Authorization header is not HTTP Basic: base64 of API_KEY:API_SECRET."
            ) from None
        api_key, _, secret = decoded.partition(":")
        customer = services.authenticate(api_key, secret)
        if customer is None:
            raise exceptions.AuthenticationFailed("Unknown API key, revoked, or a wrong secret.")
        request.customer = customer
        return (None, customer)

    def authenticate_header(self, request):
        return 'Basic realm="Zapgate orders"'


class CustomerRequired(permissions.BasePermission):
    message = "HTTP Basic credentials (API_KEY:API_SECRET) of a customer are required."

    def has_permission(self, request, view):
        if not isinstance(request.auth, Customer):
            raise exceptions.NotAuthenticated(self.message)
        return True
