"""Merchants selling their own resources: issuing challenges (idempotent with a key),
listing them, verifying a buyer's credential, and the merchant's L402 stats."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from config.pagination import ItemsPagination
from config.problems import Problem, problems

from .. import serializers as s
from ..models import L402Challenge
from ..services import challenges, credentials, stats
from .base import MerchantView


def _idempotency_key(request) -> str | None:
    key = (
        request.META.get("HTTP_X_IDEMPOTENCY_KEY") or request.META.get("HTTP_IDEMPOTENCY_KEY") or ""
    ).strip()
    if len(key) > 256:
        raise Problem(
            400,
            "validation_error",
            "X-Idempotency-Key must be at most 256 characters",
            {"X-Idempotency-Key": ["At most 256 characters."]},
        )
    return key or None


def _challenge_body(challenge: L402Challenge) -> dict:
    return {
        "invoice": challenge.invoice.bolt11,
        "macaroon": challenge.macaroon,
        "paymentHash": challenge.invoice.payment_hash,
        "expiresAt": challenge.invoice.expires_at,
        "resource": challenge.resource,
        "priceSats": challenge.price_sats,
        "mppChallenge": challenges.payment_challenge_string(challenge),
    }


STATUS_ALIASES = {"unpaid": L402Challenge.Status.PENDING}  # lightning-enable-mcp's word


class ChallengesView(MerchantView):
    pagination_class = ItemsPagination

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=[*L402Challenge.Status.values, *STATUS_ALIASES],
                description="unpaid is pending (not paid and not expired).",
            ),
            *ItemsPagination.openapi_parameters(),
        ],
        responses=s.ChallengeList,
    )
    def get(self, request):
        asked = request.query_params.get("status") or None
        wanted = STATUS_ALIASES.get(asked, asked)
        if wanted and wanted not in L402Challenge.Status.values:
            allowed = ", ".join([*L402Challenge.Status.values, *STATUS_ALIASES])
            raise Problem(
                400,
                "validation_error",
                f"status must be one of {allowed}",
                {"status": [f"Must be one of {allowed}."]},
            )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            challenges.list_challenges(request.merchant, wanted), request, view=self
        )
        rows = s.ChallengeItem(page, many=True).data
        # `items` as everywhere in this API; `challenges` too, as Lightning Enable's
        # clients read it.
        return Response(
            {
                "items": rows,
                "challenges": rows,
                "total": paginator.count,
                "limit": paginator.limit,
                "offset": paginator.offset,
                "status": asked,
            }
        )

    @extend_schema(
        request=s.ChallengeRequest,
        responses={
            201: s.ChallengeResponse,
            **problems(409, 503, d409="The idempotency key was used for another challenge."),
        },
        parameters=[
            OpenApiParameter(
                "X-Idempotency-Key",
                {"type": "string", "maxLength": 256},
                OpenApiParameter.HEADER,
                description="A retry with the same key returns the first challenge.",
            )
        ],
    )
    def post(self, request):
        data = s.ChallengeRequest(data=request.data)
        data.is_valid(raise_exception=True)
        challenge = challenges.create_merchant_challenge(
            request.merchant,
            data.validated_data["resource"],
            data.validated_data["priceSats"],
            data.validated_data["description"] or "",
            idempotency_key=_idempotency_key(request),
        )
        body = s.ChallengeResponse(_challenge_body(challenge)).data
        return Response(body, status=status.HTTP_201_CREATED)


class VerifyView(MerchantView):
    @extend_schema(request=s.VerifyRequest, responses=s.VerifyResponse)
    def post(self, request):
        data = s.VerifyRequest(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data.get("paymentCredential"):
            result = credentials.verify_merchant_payment(
                request.merchant, data.validated_data["paymentCredential"]
            )
        elif not data.validated_data.get("macaroon"):
            result = credentials.Verification(valid=False, error="the macaroon is required")
        else:
            result = credentials.verify_merchant_credential(
                request.merchant, data.validated_data["macaroon"], data.validated_data["preimage"]
            )
        return Response(
            {
                "valid": result.valid,
                "resource": result.resource,
                "merchantId": result.merchant_id,
                "amountSats": result.amount_sats,
                "paymentHash": result.payment_hash,
                "error": result.error,
            }
        )


class StatsView(MerchantView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(stats.l402_stats(request.merchant))


class DownloadStatsView(MerchantView):
    @extend_schema(
        responses=s.DownloadStats,
        summary="Paid content downloaded: by item (alone or in bundles) and bundles",
    )
    def get(self, request):
        return Response(s.DownloadStats(stats.download_stats(request.merchant)).data)
