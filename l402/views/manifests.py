"""For agents that look for what is sold: the registry of published proxy manifests, the
manifest validator and schema, and the MCP client's version check."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import manifest
from .. import serializers as s
from ..services import mcp


class RegistryView(APIView):
    @extend_schema(parameters=[s.RegistryQuery], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        query = s.RegistryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        return Response(manifest.registry(q["q"], q["category"], q["page"], q["pageSize"]))


class ValidateManifestView(APIView):
    @extend_schema(
        request=OpenApiTypes.ANY,
        description="Any JSON value: the answer says whether it is a valid manifest and, if "
        "not, what is wrong with it.",
        responses=inline_serializer(
            "ManifestValidation",
            {"valid": serializers.BooleanField(), "errors": serializers.ListField()},
        ),
    )
    def post(self, request):
        errors = manifest.validate_manifest(request.data)
        return Response({"valid": not errors, "errors": errors})


class ManifestSchemaView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(manifest.MANIFEST_SCHEMA)


class VersionCheckView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "currentVersion",
                {
                    "type": "string",
                    "maxLength": 64,
                    "pattern": f"^(?:{mcp.VERSION_PATTERN})?$",
                },
                description="The client's version, e.g. 1.2.3 (empty or left out: just tell "
                "the latest).",
            )
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        return Response(mcp.mcp_version_check(request.query_params.get("currentVersion")))
