"""The merchant API of refunds. Views parse, call one service, and render."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status as http_status
from rest_framework.response import Response

from checkout import selectors as checkout_selectors
from checkout.views import MerchantView
from config.pagination import ItemsPagination
from config.problems import Problem, problems

from . import services
from .models import Refund
from .serializers import (
    PaymentRefundRequestSerializer,
    RefundRequestSerializer,
    RefundSerializer,
    refund_data,
)

TAG = ["refunds"]
REFUND_ANSWERS = {201: RefundSerializer, **problems(400, 401, 403, 404, 409, 422, 503)}


def _create(request, payment, data) -> Response:
    options = {k: v for k, v in data.items() if k not in ("payment_hash", "shopify_order_id")}
    if "email" in options and not options["email"]:
        options.pop("email")
    refund = services.create_refund(request.merchant, payment, **options)
    if refund.state == Refund.State.PENDING:
        refund = services.pay_out(refund.pk)  # to the refund address, now
    return Response(refund_data(refund), status=http_status.HTTP_201_CREATED)


class CheckoutRefundsView(MerchantView):
    serializer_class = RefundSerializer
    pagination_class = ItemsPagination

    def _checkout(self, request, invoice_id):
        checkout = checkout_selectors.checkout_of(request.merchant, invoice_id)
        if checkout is None:
            raise Problem(404, "not_found", f"No checkout invoice {invoice_id}.")
        return checkout

    @extend_schema(
        operation_id="checkout_invoice_refunds_create",
        tags=TAG,
        summary="Refund a paid checkout invoice, in full or in part (admin key)",
        description="Without an amount, refunds all that is left. With the checkout's (or "
        "this request's) refundAddress the gateway pays it at once; otherwise the answer "
        "carries a refund link (claimUrl) and its LNURL-withdraw (lnurl) for the buyer.",
        request=RefundRequestSerializer,
        responses=REFUND_ANSWERS,
    )
    def post(self, request, invoiceId):
        checkout = self._checkout(request, invoiceId)
        data = RefundRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payment = services.payment_of_checkout(request.merchant, checkout)
        return _create(request, payment, data.validated_data)

    @extend_schema(
        operation_id="checkout_invoice_refunds_list",
        tags=TAG,
        summary="The refunds of a checkout invoice, newest first",
        responses={200: RefundSerializer(many=True), **problems(401, 404)},
    )
    def get(self, request, invoiceId):
        checkout = self._checkout(request, invoiceId)
        refunds = Refund.objects.filter(
            merchant=request.merchant, source=Refund.Source.CHECKOUT, source_id=checkout.public_id
        ).order_by("-id")
        page = self.paginate_queryset(refunds.select_related("payout"))
        return self.get_paginated_response([refund_data(r) for r in page])


class RefundListView(MerchantView):
    serializer_class = RefundSerializer
    pagination_class = ItemsPagination

    @extend_schema(
        operation_id="refunds_create",
        tags=TAG,
        summary="Refund any paid payment: a Shopify order, an L402 purchase, a wallet payment "
        "(admin key)",
        request=PaymentRefundRequestSerializer,
        responses=REFUND_ANSWERS,
    )
    def post(self, request):
        data = PaymentRefundRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if "shopify_order_id" in values:
            payment = services.payment_of_shopify_order(
                request.merchant, values["shopify_order_id"]
            )
        else:
            payment = services.payment_by_hash(request.merchant, values["payment_hash"])
        return _create(request, payment, values)

    @extend_schema(
        operation_id="refunds_list",
        tags=TAG,
        summary="Your refunds, newest first",
        parameters=[
            OpenApiParameter("state", str, enum=Refund.State.values, description="Only these.")
        ],
        responses={200: RefundSerializer(many=True), **problems(400, 401)},
    )
    def get(self, request):
        refunds = Refund.objects.filter(merchant=request.merchant)
        state = request.query_params.get("state")
        if state is not None:
            if state not in Refund.State.values:
                raise Problem(
                    400,
                    "validation_error",
                    f"state must be one of {', '.join(Refund.State.values)}.",
                    {"state": ["Unknown state."]},
                )
            refunds = refunds.filter(state=state)
        page = self.paginate_queryset(refunds.select_related("payout").order_by("-id"))
        return self.get_paginated_response([refund_data(r) for r in page])


def _refund_of(request, refund_id) -> Refund:
    refund = (
        Refund.objects.select_related("merchant", "payout")
        .filter(merchant=request.merchant, public_id=refund_id)
        .first()
    )
    if refund is None:
        raise Problem(404, "not_found", f"No refund {refund_id}.")
    return refund


class RefundDetailView(MerchantView):
    serializer_class = RefundSerializer

    @extend_schema(
        operation_id="refunds_retrieve",
        tags=TAG,
        summary="Get a refund",
        responses={200: RefundSerializer, **problems(401, 404)},
    )
    def get(self, request, refundId):
        return Response(refund_data(_refund_of(request, refundId)))


class RefundReissueView(MerchantView):
    serializer_class = RefundSerializer

    @extend_schema(
        operation_id="refunds_reissue",
        tags=TAG,
        summary="A new refund link, with a new expiry (admin key)",
        description="For a refund link that is unclaimed or expired; the old link stops "
        "working. Emailed to the buyer again when the email is known.",
        request=None,
        responses={200: RefundSerializer, **problems(401, 403, 404, 409)},
    )
    def post(self, request, refundId):
        refund = services.reissue(_refund_of(request, refundId))
        return Response(refund_data(refund))


class RefundCancelView(MerchantView):
    serializer_class = RefundSerializer

    @extend_schema(
        operation_id="refunds_cancel",
        tags=TAG,
        summary="Withdraw a refund not yet being paid (admin key)",
        request=None,
        responses={200: RefundSerializer, **problems(401, 403, 404, 409)},
    )
    def post(self, request, refundId):
        refund = services.cancel(_refund_of(request, refundId))
        return Response(refund_data(refund))
