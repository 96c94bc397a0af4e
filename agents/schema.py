"""How the OpenAPI document describes NIP-98 (`Authorization: Nostr ...`) authentication."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class NostrScheme(OpenApiAuthenticationExtension):
    target_class = "agents.auth.NostrAuthentication"
    name = "Nostr"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "NIP-98 HTTP auth: `Nostr <base64 of a signed kind-27235 event>` "
            "with `u` (the absolute URL), `method` and optionally `payload` (sha256 hex of "
            "the body) tags, created_at within 60 seconds; each event is accepted once.",
        }


class NostrKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agents.auth.NostrKeyAuthentication"
    name = "NostrSignedRegistration"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "NIP-98 by the key being registered (it need not be registered "
            "yet): `Nostr <base64 of a signed kind-27235 event>` with `u`, `method` and "
            "`payload` (sha256 hex of the body, required here) tags. The registration is then "
            "verified at once.",
        }
