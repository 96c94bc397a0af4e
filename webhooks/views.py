"""The webhooks API (admin key): endpoints, their secrets, deliveries and redelivery."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from checkout.auth import AdminKeyRequired, ApiKeyAuthentication
from config.pagination import ItemsPagination
from config.problems import problems

from . import services
from .models import WebhookDelivery, WebhookEndpoint
from .serializers import (
    DefaultSecretSerializer,
    DeliveryDetailSerializer,
    DeliveryFilterSerializer,
    DeliverySerializer,
    EndpointSerializer,
    EndpointWithSecretSerializer,
)

PAGE_PARAMETERS = ItemsPagination.openapi_parameters()


class MerchantView(GenericAPIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AdminKeyRequired]
    pagination_class = ItemsPagination

    def get_endpoint(self, endpoint_id) -> WebhookEndpoint:
        """The merchant's own endpoint; anyone else's is a 404."""
        return get_object_or_404(
            WebhookEndpoint, public_id=endpoint_id, merchant=self.request.merchant
        )

    def get_delivery(self, endpoint_id, delivery_id) -> WebhookDelivery:
        return get_object_or_404(
            WebhookDelivery.objects.select_related("event"),
            public_id=delivery_id,
            endpoint=self.get_endpoint(endpoint_id),
        )


@extend_schema(tags=["webhooks"])
class EndpointListView(MerchantView):
    @extend_schema(
        operation_id="webhooks_list",
        parameters=PAGE_PARAMETERS,
        responses={200: EndpointSerializer(many=True), **problems(400, 401, 403)},
    )
    def get(self, request):
        endpoints = WebhookEndpoint.objects.filter(merchant=request.merchant).order_by(
            "-created_at", "-pk"
        )
        page = self.paginate_queryset(endpoints)
        return self.get_paginated_response(EndpointSerializer(page, many=True).data)

    @extend_schema(
        operation_id="webhooks_create",
        request=EndpointSerializer,
        responses={201: EndpointWithSecretSerializer, **problems(400, 401, 403)},
        description="Add an endpoint. The answer carries its signing secret, shown only here.",
    )
    def post(self, request):
        serializer = EndpointSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = services.create_endpoint(request.merchant, **serializer.validated_data)
        return Response(EndpointWithSecretSerializer(endpoint).data, status=201)


@extend_schema(tags=["webhooks"])
class EndpointDetailView(MerchantView):
    @extend_schema(
        operation_id="webhooks_retrieve",
        responses={200: EndpointSerializer, **problems(401, 403, 404)},
    )
    def get(self, request, endpoint_id):
        return Response(EndpointSerializer(self.get_endpoint(endpoint_id)).data)

    @extend_schema(
        operation_id="webhooks_update",
        request=EndpointSerializer,
        responses={200: EndpointSerializer, **problems(400, 401, 403, 404)},
    )
    def patch(self, request, endpoint_id):
        endpoint = self.get_endpoint(endpoint_id)
        serializer = EndpointSerializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        endpoint = services.update_endpoint(endpoint, **serializer.validated_data)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhooks_destroy", responses={204: None, **problems(401, 403, 404)}
    )
    def delete(self, request, endpoint_id):
        self.get_endpoint(endpoint_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["webhooks"])
class RotateSecretView(MerchantView):
    @extend_schema(
        operation_id="webhooks_rotate_secret",
        request=None,
        responses={200: EndpointWithSecretSerializer, **problems(401, 403, 404)},
        description="A new secret. For 24 hours the old one keeps working: every webhook "
        "carries a signature with each secret.",
    )
    def post(self, request, endpoint_id):
        endpoint = self.get_endpoint(endpoint_id)
        services.rotate_secret(endpoint)
        return Response(EndpointWithSecretSerializer(endpoint).data)


@extend_schema(tags=["webhooks"])
class TestEventView(MerchantView):
    @extend_schema(
        operation_id="webhooks_test",
        request=None,
        responses={202: DeliverySerializer, **problems(401, 403, 404)},
        description="Send a `webhook.test` event to this endpoint.",
    )
    def post(self, request, endpoint_id):
        delivery = services.send_test_event(self.get_endpoint(endpoint_id))
        return Response(DeliverySerializer(delivery).data, status=202)


@extend_schema(tags=["webhooks"])
class DeliveryListView(MerchantView):
    @extend_schema(
        operation_id="webhooks_deliveries_list",
        parameters=[DeliveryFilterSerializer, *PAGE_PARAMETERS],
        responses={200: DeliverySerializer(many=True), **problems(400, 401, 403, 404)},
    )
    def get(self, request, endpoint_id):
        endpoint = self.get_endpoint(endpoint_id)
        filters = DeliveryFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        deliveries = endpoint.deliveries.select_related("event").order_by("-created_at", "-pk")
        if "status" in filters.validated_data:
            deliveries = deliveries.filter(status=filters.validated_data["status"])
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


@extend_schema(tags=["webhooks"])
class DeliveryDetailView(MerchantView):
    @extend_schema(
        operation_id="webhooks_deliveries_retrieve",
        responses={200: DeliveryDetailSerializer, **problems(401, 403, 404)},
    )
    def get(self, request, endpoint_id, delivery_id):
        delivery = self.get_delivery(endpoint_id, delivery_id)
        return Response(DeliveryDetailSerializer(delivery).data)


@extend_schema(tags=["webhooks"])
class RedeliverView(MerchantView):
    @extend_schema(
        operation_id="webhooks_deliveries_redeliver",
        request=None,
        responses={202: DeliverySerializer, **problems(401, 403, 404, 409)},
        description="Send the delivery again now, with a fresh retry schedule.",
    )
    def post(self, request, endpoint_id, delivery_id):
        delivery = services.redeliver(self.get_delivery(endpoint_id, delivery_id))
        return Response(DeliverySerializer(delivery).data, status=202)


@extend_schema(tags=["webhooks"])
class DefaultSecretView(MerchantView):
    @extend_schema(
        operation_id="webhooks_default_secret",
        responses={200: DefaultSecretSerializer, **problems(401, 403)},
        description="The secret that signs what goes to a checkout invoice's own webhookUrl.",
    )
    def get(self, request):
        return Response(DefaultSecretSerializer(services.default_secret(request.merchant)).data)


@extend_schema(tags=["webhooks"])
class RotateDefaultSecretView(MerchantView):
    @extend_schema(
        operation_id="webhooks_default_secret_rotate",
        request=None,
        responses={200: DefaultSecretSerializer, **problems(401, 403)},
        description="A new default secret; the old one keeps signing too for 24 hours.",
    )
    def post(self, request):
        holder = services.default_secret(request.merchant)
        services.rotate_secret(holder)
        return Response(DefaultSecretSerializer(holder).data)
