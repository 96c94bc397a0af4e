from django.conf import settings
from django.db import DatabaseError, connection
from django.http import Http404, JsonResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from config.middleware import api_methods
from config.problems import Problem, problems
from config.serializers import StrictJsonTypes

from .backends import get_backend
from .backends.base import NodeError, PaymentFailed
from .services import watcher_status


@api_methods("GET", "HEAD")
def health(request):
    """Liveness of the parts a payment needs: 200 when all answer, 503 naming the failing:
    the database, the node, or the watcher (no watcher renewed its lease or applied a
    batch for longer than WATCHER_HEALTH_MAX_AGE_SECONDS: payments are not being recorded).
    GET and HEAD only."""
    body = {"status": "ok", "database": "ok"}
    failing = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        body["database"] = f"error: {exc}".strip()
        failing.append("database")
    backend = get_backend()
    try:
        info = backend.get_info()
        body["node"] = {
            "backend": info.backend,
            "pubkey": info.pubkey,
            "alias": info.alias,
            "network": info.network,
        }
    except NodeError as exc:
        body["node"] = {"backend": backend.name, "error": str(exc)}
        failing.append("node")
        info = None
    if info and not failing:
        body["watcher"] = watcher = watcher_status(f"{info.backend}:{info.pubkey}")
        if watcher["stale"]:
            failing.append("watcher")
    if failing:
        body["status"] = "unavailable"
        body["failing"] = failing
        return JsonResponse(body, status=503)
    return JsonResponse(body)


class DevPayRequest(StrictJsonTypes, serializers.Serializer):
    bolt11 = serializers.CharField(max_length=4000, trim_whitespace=True)


class DevPayView(APIView):
    """Pay one of the dev node's own invoices. Exists only with the dev node in dev mode."""

    @extend_schema(
        request=DevPayRequest,
        responses={
            200: inline_serializer(
                "DevPayResponse",
                {
                    "paymentHash": serializers.CharField(),
                    "preimage": serializers.CharField(allow_null=True),
                },
            ),
            **problems(
                404,
                409,
                d404="Not in dev mode with the dev node: this endpoint does not exist.",
                d409="payment_failed: not a valid BOLT11 invoice of this node, or not payable.",
            ),
        },
    )
    def post(self, request):
        if not (settings.DEV_MODE and settings.LIGHTNING_BACKEND == "devnode"):
            raise Http404
        data = DevPayRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            payment = get_backend().pay_invoice(data.validated_data["bolt11"])
        except PaymentFailed as exc:
            raise Problem(409, "payment_failed", str(exc)) from exc
        return Response({"paymentHash": payment.payment_hash, "preimage": payment.preimage or None})
