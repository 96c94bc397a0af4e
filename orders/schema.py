"""How the OpenAPI document describes the orders API's HTTP Basic (the Bitrefill seed's)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class CustomerBasicScheme(OpenApiAuthenticationExtension):
    target_class = "orders.auth.CustomerBasicAuthentication"
    name = "CustomerBasic"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "A merchant's customer: `curl -u API_KEY:API_SECRET` "
            "(POST /api/orders/customers issues them).",
        }
