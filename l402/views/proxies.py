"""The merchant API of reverse proxies (proxies, priced endpoints, manifest settings) and
the manifest and OpenAPI document a proxy publishes."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout.auth import AdminKeyRequired
from config.pagination import ItemsPagination
from config.problems import Problem, problems

from .. import manifest
from .. import serializers as s
from ..models import Proxy
from ..services import proxies
from .base import AdminWritesView, MerchantView


def _own_proxy(request, proxy_id: str) -> Proxy:
    return get_object_or_404(
        Proxy.objects.prefetch_related("endpoints"), merchant=request.merchant, proxy_id=proxy_id
    )


class ProxyListView(AdminWritesView):
    pagination_class = ItemsPagination

    @extend_schema(responses=s.ProxySerializer(many=True))
    def get(self, request):
        own = Proxy.objects.filter(merchant=request.merchant).prefetch_related("endpoints")
        return self.pagination_class.respond(self, own, s.ProxySerializer)

    @extend_schema(request=s.ProxySerializer, responses={201: s.ProxySerializer})
    def post(self, request):
        data = s.ProxySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        proxy = proxies.create_proxy(
            request.merchant, auth_value=fields.pop("authValue", ""), **fields
        )
        return Response(s.ProxySerializer(proxy).data, status=status.HTTP_201_CREATED)


class ProxyDetailView(AdminWritesView):
    @extend_schema(responses=s.ProxySerializer)
    def get(self, request, proxy_id):
        return Response(s.ProxySerializer(_own_proxy(request, proxy_id)).data)

    @extend_schema(request=s.ProxySerializer, responses=s.ProxySerializer)
    def put(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        data = s.ProxySerializer(proxy, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        proxies.update_proxy(proxy, auth_value=fields.pop("authValue", None), **fields)
        return Response(s.ProxySerializer(_own_proxy(request, proxy_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, proxy_id):
        _own_proxy(request, proxy_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class UnpublishView(MerchantView):
    permission_classes = [AdminKeyRequired]

    @extend_schema(request=s.UnpublishRequest, responses=s.UnpublishResponse)
    def post(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        data = s.UnpublishRequest(data=request.data)
        data.is_valid(raise_exception=True)
        already = proxies.unpublish_proxy(proxy, data.validated_data["reason"])
        return Response({"proxyId": proxy.proxy_id, "retired": True, "alreadyRetired": already})


class EndpointsView(AdminWritesView):
    pagination_class = ItemsPagination

    @extend_schema(responses=s.ProxyEndpointSerializer(many=True))
    def get(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        endpoints = proxy.endpoints.order_by("pk")
        return self.pagination_class.respond(self, endpoints, s.ProxyEndpointSerializer)

    @extend_schema(
        request=s.ProxyEndpointSerializer,
        responses={
            201: s.ProxyEndpointSerializer,
            200: s.ProxyEndpointSerializer,
            **problems(409, d409="Another endpoint prices this method and path."),
        },
    )
    def post(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        data = s.ProxyEndpointSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        endpoint, created = proxies.save_endpoint(proxy, fields.pop("endpoint_id"), **fields)
        return Response(
            s.ProxyEndpointSerializer(endpoint).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class EndpointDetailView(MerchantView):
    permission_classes = [AdminKeyRequired]

    @extend_schema(responses={204: None})
    def delete(self, request, proxy_id, endpoint_id):
        proxy = _own_proxy(request, proxy_id)
        get_object_or_404(proxy.endpoints, endpoint_id=endpoint_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ManifestSettingsView(MerchantView):
    permission_classes = [AdminKeyRequired]

    @extend_schema(request=s.ManifestSettings, responses=s.ProxySerializer)
    def put(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        data = s.ManifestSettings(data=request.data)
        data.is_valid(raise_exception=True)
        proxies.update_manifest_settings(proxy, **data.validated_data)
        return Response(s.ProxySerializer(_own_proxy(request, proxy_id)).data)


def _public_proxy(proxy_id: str) -> Proxy:
    proxy = proxies.get_proxy_for_request(proxy_id)
    if not proxy.manifest_enabled:
        raise Problem(404, "not_found", f"the proxy {proxy_id} publishes no manifest")
    return proxy


class ProxyManifestView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, proxy_id):
        return Response(manifest.build_manifest(_public_proxy(proxy_id)))


class ProxyOpenApiView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, proxy_id):
        return Response(manifest.build_openapi(_public_proxy(proxy_id)))
