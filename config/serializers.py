"""Request bodies are strict about JSON types.

DRF converts what it can: `0` becomes `"0"` for a text field, `"true"` or `1` becomes
`true`, `"5"` becomes `5`, `12.5` (a float) becomes a decimal amount. A payment API should
not guess: a value of another JSON type than the OpenAPI document says is a 400 naming the
field. Serializers that validate a
JSON body mix `StrictJsonTypes` in (first), also the nested ones:

    class ThingRequest(StrictJsonTypes, serializers.Serializer): ...

Query strings are text by nature: a serializer given `request.query_params` converts as
DRF does.
"""

import copy
import re
from collections.abc import Mapping

from django.http import QueryDict
from rest_framework import serializers

_NUMBER = (int, float)
# A decimal string: digits, at most one point with digits after it; no exponent, no spaces.
DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")


def json_types(field) -> tuple[tuple[type, ...], str] | None:
    """The Python types of the JSON values a field takes, and how to say so; None: any."""
    if isinstance(field, serializers.BooleanField):
        return (bool,), "true or false"
    if isinstance(field, serializers.IntegerField):
        return (int,), "an integer"
    if isinstance(field, serializers.FloatField):
        return _NUMBER, "a number"
    if isinstance(field, serializers.DecimalField):
        return (str,), 'a decimal string (e.g. "12.50")'
    if isinstance(field, serializers.MultipleChoiceField | serializers.ListField):
        return (list,), "a list"
    if isinstance(field, serializers.ListSerializer):
        return (list,), "a list"
    if isinstance(field, serializers.ChoiceField):
        kinds = {type(choice) for choice in field.choices}
        return (tuple(kinds), "one of the choices") if kinds else None
    if isinstance(field, serializers.DictField | serializers.Serializer):
        return (dict,), "an object"
    if isinstance(field, serializers.JSONField):
        return None
    if isinstance(field, serializers.CharField | serializers.DateTimeField):
        return (str,), "a string"
    return None


# Fields that bind fields of their own (a child, nested fields): copied deeply.
_WITH_INNER_FIELDS = (
    serializers.ListField,
    serializers.DictField,
    serializers.HStoreField,
    serializers.BaseSerializer,
)


class StrictJsonTypes:
    # Mix into a serializer (before the DRF base): JSON values of the wrong type are a 400.
    # (A comment, not a docstring: the OpenAPI document would show it as the description
    # of every serializer that has none of its own.)

    def get_fields(self):
        # DRF deep-copies each declared field for every serializer made, re-running its
        # __init__: 12% of the CPU of making a checkout invoice. A field without fields of
        # its own is copied shallowly instead: binding sets attributes on the copy only,
        # and what it shares with the declared field (validators, choices, messages) is
        # never changed after __init__. ModelSerializers build theirs as DRF does.
        if isinstance(self, serializers.ModelSerializer):
            return super().get_fields()
        return {
            name: copy.deepcopy(field)
            if isinstance(field, _WITH_INNER_FIELDS)
            else copy.copy(field)
            for name, field in self._declared_fields.items()
        }

    def to_internal_value(self, data):
        if isinstance(data, Mapping) and not isinstance(data, QueryDict):
            errors = {}
            for field in self.fields.values():
                if not field.read_only and field.field_name in data:
                    message = wrong_type(field, data[field.field_name])
                    if message:
                        errors[field.field_name] = [message]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def wrong_type(field, value) -> str | None:
    """What is wrong with the JSON type of `value` for `field` (and its items), or None."""
    if value is None:
        return None  # allow_null decides
    expected = json_types(field)
    if expected is None:
        return None
    types, description = expected
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        return f"Must be {description}."
    if isinstance(field, serializers.DecimalField) and not DECIMAL.fullmatch(value):
        return f"Must be {description}."
    if isinstance(field, serializers.ListField) and field.child is not None:
        for index, item in enumerate(value):
            message = wrong_type(field.child, item)
            if message:
                return f"Item {index}: {message}"
    return None
