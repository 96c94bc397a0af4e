"""How the OpenAPI document describes every operation (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS).

The views document what their own rules answer (`problems(409, 429)` ...). The problems
that the shared machinery answers on every operation are added here, so that no view can
forget them and the document says what the API really does:

- 400 where the operation takes parameters or a body (malformed JSON, validation, NUL);
- 401 where the view authenticates (an unknown or revoked key is refused even where a key
  is optional);
- 403 where an admin key is required for the method;
- 404 where the path names an object (an unknown id, or another merchant's);
- 413 and 415 where the operation takes a body (too large, not JSON).

Request bodies of serializers that refuse unknown fields (`rejects_unknown_fields`) say
`additionalProperties: false`; a serializer states rules between its fields that JSON Schema
can say in `openapi_request_rules` (merged into its request schema). Decimal fields say
exactly what they take: a decimal string of the field's precision and bounds
(config.serializers refuses JSON numbers for them).

Security: an operation whose view lets a caller without credentials in (no permission
class, or one that says so for the method) lists `{}` among its security requirements.
"""

import copy

from drf_spectacular.drainage import has_override
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import append_meta, force_instance
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from .problems import PROBLEM_CONTENT_TYPE, problem_doc


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._framework_problems(operation):
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    problem_doc(code), str(code), [PROBLEM_CONTENT_TYPE]
                )
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _framework_problems(self, operation) -> list[int]:
        codes = []
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        if parameters or has_body:
            codes.append(400)
        if self.view.get_authenticators():
            codes.append(401)
        if any(getattr(p, "admin_only", False) for p in self.view.get_permissions()):
            codes.append(403)
        if any(p["in"] == "path" for p in parameters):
            codes.append(404)
        if has_body:
            codes += [413, 415]
        return codes

    def get_auth(self):
        auths = super().get_auth()
        if auths and {} not in auths and self._anonymous_allowed():
            auths.append({})
        return auths

    def _anonymous_allowed(self) -> bool:
        permissions = self.view.get_permissions()
        return all(
            getattr(p, "allows_anonymous", lambda view, method: False)(self.view, self.method)
            for p in permissions
        )

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        if isinstance(serializer, PolymorphicProxySerializer) and self.method != "PATCH":
            # A oneOf of shapes that each require a field: the body is required.
            shapes = serializer.serializers
            shapes = shapes.values() if isinstance(shapes, dict) else shapes
            required = all(
                any(field.required for field in force_instance(shape).fields.values())
                for shape in shapes
            )
        if getattr(serializer, "openapi_body_required", False):
            required = True  # its fields are optional one by one, but not all at once
        return schema, required

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request":
            if getattr(serializer, "rejects_unknown_fields", False):
                schema["additionalProperties"] = False
            schema.update(copy.deepcopy(getattr(serializer, "openapi_request_rules", {})))
            for name, field in serializer.fields.items():
                prop = schema.get("properties", {}).get(name)
                if (
                    isinstance(field, serializers.CharField)
                    and field.trim_whitespace
                    and not field.allow_blank
                    and not has_override(field, "field")
                    and isinstance(prop, dict)
                    and prop.get("type") == "string"
                    and not {"pattern", "format", "enum"} & set(prop)
                ):
                    # DRF strips the value first: one that is only whitespace is blank.
                    prop["pattern"] = NOT_ONLY_WHITESPACE
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        if isinstance(field, serializers.DecimalField) and not has_override(field, "field"):
            meta = self._get_serializer_field_meta(field, direction)
            return append_meta(decimal_schema(field, direction), meta)
        return super()._map_serializer_field(field, direction, bypass_extensions)


# A character str.strip() keeps: the value is not whitespace only (as Python counts it).
NOT_ONLY_WHITESPACE = "[^{}]".format(
    "".join(f"\\u{ord(c):04x}" for c in map(chr, range(0x3001)) if c.isspace())
)


def decimal_schema(field: serializers.DecimalField, direction: str) -> dict:
    """A DecimalField: a decimal string (no exponent, at most `decimal_places` decimals and
    `max_digits` significant digits, no sign when it cannot be negative, not zero when it
    must be positive)."""
    places = field.decimal_places or 0
    whole = (field.max_digits - places) if field.max_digits is not None else None
    digits = f"{{1,{whole}}}" if whole else "+"
    fraction = rf"(?:\.[0-9]{{1,{places}}})?" if places else ""
    low = field.min_value
    if low is not None and low > 0:
        # Positive: a non-zero whole part, or a zero one and a non-zero fraction.
        nonzero_whole = rf"0*[1-9][0-9]{{0,{whole - 1}}}" if whole else "0*[1-9][0-9]*"
        fractions = "|".join(
            "0" * i + "[1-9]" + (f"[0-9]{{0,{places - 1 - i}}}" if places - 1 - i else "")
            for i in range(places)
        )
        body = f"{nonzero_whole}{fraction}" + (f"|0*\\.(?:{fractions})" if places else "")
        pattern = f"^(?:{body})$"
    else:
        sign = "" if low is not None and low >= 0 else "-?"
        point_first = rf"|{sign}\.[0-9]{{1,{places}}}" if places else ""
        pattern = f"^(?:{sign}0*[0-9]{digits}{fraction}{point_first})$"
    return {"type": "string", "format": "decimal", "pattern": pattern}
