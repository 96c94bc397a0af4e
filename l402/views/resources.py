"""Paid resources on the gateway itself: the demo and premium-data answers (with the
pricing and status pages that describe them) and merchants' paywalled content."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout.auth import AdminKeyRequired
from config.pagination import ItemsPagination
from config.problems import problems

from .. import manifest
from .. import serializers as s
from ..macaroons import RESOURCE, RequestScope
from ..models import L402Challenge
from ..services import content, credentials
from ..services.offers import Offer
from .base import AdminWritesView
from .gate import PAID_RESPONSES, drf_problem, gate


def _demo_offer(resource: str, price: int, description: str) -> Offer:
    return Offer(
        kind=L402Challenge.Kind.DEMO,
        resource=resource,
        price_sats=price,
        caveats=[(RESOURCE, resource)],
        description=description,
        scope=RequestScope(resource=resource),
    )


DEMO = ("demo", "L402 demo resource")
PREMIUM = ("premium-data", "L402 premium data")
PING = ("test/ping", "L402 test ping")


class DemoView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, **PAID_RESPONSES})
    def get(self, request):
        paid = gate(request, _demo_offer(DEMO[0], settings.L402_DEMO_PRICE_SATS, DEMO[1]))
        if paid.refusal:
            return drf_problem(paid.refusal)
        return Response(
            {
                "message": "Payment received: this answer was paid with Lightning.",
                "resource": "demo",
            },
            headers=paid.headers,
        )


class PremiumDataView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, **PAID_RESPONSES})
    def get(self, request):
        offer = _demo_offer(PREMIUM[0], settings.L402_PREMIUM_PRICE_SATS, PREMIUM[1])
        paid = gate(request, offer)
        if paid.refusal:
            return drf_problem(paid.refusal)
        return Response(
            {
                "resource": "premium-data",
                "data": {
                    "blockTimeTargetSeconds": 600,
                    "satsPerBtc": 100_000_000,
                    "halvingIntervalBlocks": 210_000,
                },
            },
            headers=paid.headers,
        )


class PingView(APIView):
    """A paid ping: the cheapest way to see a client pay and retry end to end."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **PAID_RESPONSES})
    def get(self, request):
        offer = _demo_offer(PING[0], settings.L402_PING_PRICE_SATS, PING[1])
        paid = gate(request, offer)
        if paid.refusal:
            return drf_problem(paid.refusal)
        return Response(
            {"pong": True, "resource": PING[0], "time": timezone.now()}, headers=paid.headers
        )


class PricingView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(
            {
                "currency": "sats",
                "resources": [
                    {
                        "path": "/api/l402/demo",
                        "priceSats": settings.L402_DEMO_PRICE_SATS,
                        "description": DEMO[1],
                    },
                    {
                        "path": "/api/l402/premium-data",
                        "priceSats": settings.L402_PREMIUM_PRICE_SATS,
                        "description": PREMIUM[1],
                    },
                    {
                        "path": "/l402/test/ping",
                        "priceSats": settings.L402_PING_PRICE_SATS,
                        "description": PING[1],
                    },
                ],
                "tokenTtlSeconds": settings.L402_TOKEN_TTL_SECONDS,
                "invoiceExpirySeconds": settings.L402_INVOICE_EXPIRY_SECONDS,
            }
        )


class StatusView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(
            {
                "status": "ok",
                "protocol": "L402",
                "schemes": ["L402", "LSAT", "Payment"],
                "lightningBackend": settings.LIGHTNING_BACKEND,
                "authHeaderFormat": manifest.AUTH_HEADER_FORMAT,
            }
        )


class ContentListView(AdminWritesView):
    pagination_class = ItemsPagination

    def get_permissions(self):  # the list is public; publishing needs an admin key
        return [] if self.request.method == "GET" else [AdminKeyRequired()]

    @extend_schema(responses=s.ContentSummary(many=True), auth=[])
    def get(self, request):
        return self.pagination_class.respond(self, content.published_content(), s.ContentSummary)

    @extend_schema(
        request=s.ContentCreate,
        responses={201: s.ContentItem, **problems(409, d409="Content with this slug exists.")},
    )
    def post(self, request):
        data = s.ContentCreate(data=request.data)
        data.is_valid(raise_exception=True)
        item = content.create_content(request.merchant, **data.validated_data)
        return Response(s.ContentItem(item).data, status=status.HTTP_201_CREATED)


class ContentDetailView(APIView):
    @extend_schema(responses={200: s.ContentItem, **PAID_RESPONSES})
    def get(self, request, slug):
        item = content.get_content(slug)
        paid = gate(request, content.content_offer(item))
        if paid.refusal:
            return drf_problem(paid.refusal)
        return Response(s.ContentItem(item).data, headers=paid.headers)


class BundleView(APIView):
    @extend_schema(
        request=s.BundleRequest,
        responses={
            200: s.BundleResponse,
            **PAID_RESPONSES,
            **problems(404, d404="No published content has one of these slugs."),
        },
    )
    def post(self, request):
        data = s.BundleRequest(data=request.data)
        data.is_valid(raise_exception=True)
        items = content.bundle_items(data.validated_data["slugs"])
        offer = content.bundle_offer(items)
        paid = gate(request, offer, credentials.bundle_scopes(items, request.method, request.path))
        if paid.refusal:
            return drf_problem(paid.refusal)
        return Response({"items": s.ContentItem(items, many=True).data}, headers=paid.headers)
