"""Buying a one-time key: an invoice and a key that runs exactly one proxied request, in
the general form (`POST /api/invoice {proxyId, method, path, body}`) or as Blocktap's
GraphQL invoice API on a GraphQL proxy (views.proxy_request.GraphqlInvoiceView)."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from config.problems import problems

from .. import serializers as s
from ..services import one_time_keys


class OneTimeKeyView(APIView):
    @extend_schema(
        request=s.OneTimeKeyRequest,
        responses={
            201: s.OneTimeKeyResponse,
            **problems(
                403,
                404,
                405,
                410,
                503,
                d403="The path is not among the proxy's allowed paths, or is blocked.",
                d404="No such proxy.",
                d405="The proxy does not forward this method.",
                d410="The proxy was retired or deleted.",
                d503="The proxy is paused, or the Lightning node is unavailable.",
            ),
        },
    )
    def post(self, request):
        data = s.OneTimeKeyRequest(data=request.data)
        data.is_valid(raise_exception=True)
        sold = one_time_keys.sell_one_time_key(
            data.validated_data["proxyId"],
            data.validated_data["method"],
            data.validated_data["path"],
            (data.validated_data["body"] or "").encode(),
        )
        return Response(sold_key_body(sold), status=status.HTTP_201_CREATED)


def sold_key_body(sold: one_time_keys.SoldKey) -> dict:
    """Blocktap's answer: `price` (USD) and `value` (msat) are numbers, as in its API."""
    price = sold.key.price_usd
    return s.OneTimeKeyResponse(
        {
            "price": float(price) if price is not None else None,
            "value": sold.key.invoice.amount_msat,
            "paymentRequest": sold.key.invoice.bolt11,
            "apikey": sold.raw,
        }
    ).data
