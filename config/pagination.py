"""`limit` (default 20, at most 100) and `offset`, answering `{items, total}`."""

from drf_spectacular.utils import OpenApiParameter
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from .problems import Problem


class ItemsPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100
    items_key = "items"

    def get_limit(self, request):
        return self._int_param(
            request, self.limit_query_param, self.default_limit, 1, self.max_limit
        )

    def get_offset(self, request):
        return self._int_param(request, self.offset_query_param, 0, 0, None)

    @staticmethod
    def _int_param(request, name, default, low, high):
        raw = request.query_params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise Problem(
                400,
                "validation_error",
                f"{name} must be an integer",
                {name: ["Must be an integer."]},
            ) from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise Problem(
                400, "validation_error", f"{name} must be {bounds}", {name: [f"Must be {bounds}."]}
            )
        return value

    def get_paginated_response(self, data):
        return Response({self.items_key: data, "total": self.count})

    @classmethod
    def respond(cls, view, queryset, serializer_class) -> Response:
        """One page of `queryset`, rendered by `serializer_class`, as `{items, total}`: for
        an APIView (a GenericAPIView has `paginate_queryset` of its own)."""
        paginator = cls()
        page = paginator.paginate_queryset(queryset, view.request, view=view)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"How many items (default {self.default_limit}; empty: the "
                "default).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
                "allowEmptyValue": True,
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": "How many items to skip (default 0).",
                "schema": {"type": "integer", "minimum": 0},
                "allowEmptyValue": True,
            },
        ]

    @classmethod
    def openapi_parameters(cls) -> list[OpenApiParameter]:
        """`limit` and `offset` for an `extend_schema` whose response is not a plain list."""
        return [
            OpenApiParameter(p["name"], p["schema"], description=p["description"], allow_blank=True)
            for p in cls().get_schema_operation_parameters(None)
        ]

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": [self.items_key, "total"],
            "properties": {self.items_key: schema, "total": {"type": "integer"}},
        }
