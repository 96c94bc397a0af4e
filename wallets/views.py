"""The LNbits payments API (seed `lnbits-payments-api.txt`, and LNbits 1.x where it says
more), on the merchants' existing keys: an invoice key reads and receives, an admin key
also pays, settles and cancels. The key comes in `X-Api-Key` or LNbits' `?api-key=`.
Views parse, call one service, and render; the rules are in wallets.services."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework import status as http_status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout.auth import AdminKeyRequired, ApiKeyAuthentication, InvoiceKeyRequired
from checkout.models import ApiKey
from config.problems import Problem, problems
from lightning.backends.base import DuplicateInvoice, NodeError

from . import selectors, services
from .models import Payment
from .serializers import (
    PAYMENT_REQUEST,
    HistoryQuery,
    ListQuery,
    PaymentHashRequest,
    PreimageRequest,
    WalletDailyStats,
    WalletHistoryEntry,
    WalletPay,
    WalletPaymentDetails,
    WalletPaymentsPage,
    WalletStats,
    WalletTagCount,
    payment_details,
    payment_request,
)

TAG = ["wallet (LNbits payments API)"]


class WalletView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    accepts_api_key_query = True  # LNbits' ?api-key= (see checkout.auth)
    permission_classes = [InvoiceKeyRequired]

    def wallet(self):
        """The merchant's wallet, made on first use (receiving, paying, showing it)."""
        return services.wallet_for(self.request.merchant)

    def existing_wallet(self):
        """For reads and lookups: None until the merchant has a wallet (nothing is written
        for a request that only reads, or that is refused)."""
        return selectors.wallet_of(self.request.merchant)

    def payment_or_404(self, checking_id: str) -> Payment:
        payment = selectors.payment_of(self.existing_wallet(), checking_id)
        if payment is None:
            raise Problem(404, "not_found", "Payment does not exist.")
        return payment

    def is_admin(self) -> bool:
        return isinstance(self.request.auth, ApiKey) and self.request.auth.kind == "admin"


def _query(serializer_class, request) -> dict:
    empty = [name for name, value in request.query_params.items() if value == ""]
    if empty:
        raise Problem(
            400,
            "validation_error",
            f"{empty[0]} must not be empty: leave it out for the default.",
            {name: ["Must not be empty."] for name in empty},
        )
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


def _payment_error(payment: Payment) -> Problem:
    """LNbits answers a payment that did not succeed with an error carrying `status`."""
    if payment.status == Payment.Status.FAILED:
        return Problem(
            520,
            "payment_failed",
            f"Payment failed: {payment.failure_reason}",
            extra={"status": "failed", "payment_hash": payment.payment_hash},
        )
    return Problem(
        520,
        "payment_pending",
        "The payment is in flight: the node cannot say yet whether it succeeds. Check it with "
        f"GET /api/v1/payments/{payment.payment_hash}; it is never sent twice.",
        extra={"status": "pending", "payment_hash": payment.payment_hash},
    )


PAYMENT_CREATED = inline_serializer(
    "WalletPaymentCreated",
    {
        "payment_hash": serializers.CharField(),
        "checking_id": serializers.CharField(),
        "payment_request": serializers.CharField(required=False),
        "bolt11": serializers.CharField(required=False),
        "status": serializers.CharField(),
    },
)
PAYMENT_STATUS = inline_serializer(
    "WalletPaymentStatus",
    {
        "paid": serializers.BooleanField(),
        "status": serializers.CharField(),
        "preimage": serializers.CharField(allow_null=True),
        "details": WalletPaymentDetails(required=False),
    },
)
DETAIL = inline_serializer("WalletDetail", {"detail": serializers.CharField()})


class PaymentsView(WalletView):
    @extend_schema(
        operation_id="wallet_payments_list",
        tags=TAG,
        summary="List the wallet's payments, newest first (amounts in sats, negative out)",
        parameters=[ListQuery],
        responses={200: WalletPaymentDetails(many=True), **problems(400, 401)},
    )
    def get(self, request):
        query = _query(ListQuery, request)
        rows = selectors.payments_of(self.existing_wallet(), query.get("status"))
        page = rows[query["offset"] : query["offset"] + query["limit"]]
        return Response([payment_details(p) for p in page])

    @extend_schema(
        operation_id="wallet_payments_create",
        tags=TAG,
        summary="Create an invoice (out: false) or pay one (out: true, admin key)",
        request=PAYMENT_REQUEST,
        responses={
            201: PAYMENT_CREATED,
            **problems(
                400,
                401,
                402,
                403,
                409,
                503,
                520,
                d402="insufficient_balance: the balance cannot cover amount + fee reserve "
                "(nothing was sent).",
                d409="duplicate_payment_hash: a hold invoice's payment_hash is used already.",
                d520="payment_failed (status: failed) or payment_pending (status: pending, "
                "in flight: it may still succeed, check it later).",
            ),
        },
    )
    def post(self, request):
        data = payment_request(request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        wallet = self.wallet()
        if isinstance(data, WalletPay):
            if not self.is_admin():
                raise Problem(403, "forbidden", "Paying needs the wallet's admin key.")
            try:
                payment = services.pay(wallet, body["bolt11"], extra=body["extra"])
            except services.NotPayable as exc:
                raise Problem(400, exc.error, str(exc)) from exc
            except services.InsufficientBalance as exc:
                raise Problem(402, "insufficient_balance", str(exc)) from exc
            if payment.status != Payment.Status.SUCCESS:
                raise _payment_error(payment)
            return Response(
                {
                    "payment_hash": payment.payment_hash,
                    "checking_id": payment.payment_hash,
                    "status": payment.status,
                    "preimage": payment.preimage,
                    "fee": payment.fee_msat,
                },
                status=http_status.HTTP_201_CREATED,
            )
        try:
            payment = services.create_invoice(
                wallet,
                body["amount"],
                memo=body["memo"],
                expiry_seconds=body["expiry"],
                extra=body["extra"],
                webhook=body["webhook"],
                payment_hash=body.get("payment_hash"),
                description_hash=body.get("description_hash", ""),
            )
        except DuplicateInvoice as exc:
            raise Problem(
                409, "duplicate_payment_hash", "An invoice with this payment_hash exists already."
            ) from exc
        except NodeError as exc:
            raise _node_unavailable(exc) from exc
        return Response(
            {
                "payment_hash": payment.payment_hash,
                "checking_id": payment.payment_hash,
                "payment_request": payment.bolt11,
                "bolt11": payment.bolt11,
                "status": payment.status,
            },
            status=http_status.HTTP_201_CREATED,
        )


class PaginatedPaymentsView(WalletView):
    @extend_schema(
        operation_id="wallet_payments_paginated",
        tags=TAG,
        summary="List the wallet's payments with the total count: {data, total}",
        parameters=[ListQuery],
        responses={200: WalletPaymentsPage, **problems(400, 401)},
    )
    def get(self, request):
        query = _query(ListQuery, request)
        rows = selectors.payments_of(self.existing_wallet(), query.get("status"))
        page = rows[query["offset"] : query["offset"] + query["limit"]]
        return Response({"data": [payment_details(p) for p in page], "total": rows.count()})


class HistoryView(WalletView):
    @extend_schema(
        operation_id="wallet_payments_history",
        tags=TAG,
        summary="Income and spending (sats) per hour, day or month, newest first",
        parameters=[HistoryQuery],
        responses={200: WalletHistoryEntry(many=True), **problems(400, 401)},
    )
    def get(self, request):
        group = _query(HistoryQuery, request)["group"]
        return Response(selectors.history(self.existing_wallet(), group))


class CountStatsView(WalletView):
    @extend_schema(
        operation_id="wallet_payments_stats_count",
        tags=TAG,
        summary="Successful payments counted by tag (what they paid for)",
        responses={200: WalletTagCount(many=True), **problems(401)},
    )
    def get(self, request):
        return Response(selectors.count_by_tag(self.existing_wallet()))


class WalletStatsView(WalletView):
    @extend_schema(
        operation_id="wallet_payments_stats_wallets",
        tags=TAG,
        summary="Income, spending (sats) and payment count of each of your wallets",
        responses={200: WalletStats(many=True), **problems(401)},
    )
    def get(self, request):
        return Response(selectors.wallet_stats(request.merchant))


class DailyStatsView(WalletView):
    @extend_schema(
        operation_id="wallet_payments_stats_daily",
        tags=TAG,
        summary="Successful payments per day: count and net total (sats), newest first",
        responses={200: WalletDailyStats(many=True), **problems(401)},
    )
    def get(self, request):
        return Response(selectors.daily(self.existing_wallet()))


class PaymentDetailView(WalletView):
    """GET with any key (or none: then only whether it is paid); PUT settles a held payment
    (body {preimage}), DELETE cancels it, with the admin key."""

    def get_permissions(self):
        if self.request is not None and self.request.method in ("GET", "HEAD"):
            return [AllowAny()]
        return [AdminKeyRequired()]

    @extend_schema(
        operation_id="wallet_payments_retrieve",
        tags=TAG,
        summary="Whether a payment is paid; with the wallet's key, its details too",
        auth=[{"ApiKey": []}, {}],
        responses={200: PAYMENT_STATUS, **problems(401, 404)},
    )
    def get(self, request, checking_id):
        if isinstance(request.auth, ApiKey):
            payment = self.payment_or_404(checking_id)
        else:
            payment = selectors.any_payment(checking_id)
            if payment is None:
                raise Problem(404, "not_found", "Payment does not exist.")
        body = {
            "paid": payment.status == Payment.Status.SUCCESS,
            "status": payment.status,
            "preimage": payment.preimage or None,
        }
        if isinstance(request.auth, ApiKey):
            body["details"] = payment_details(payment)
        return Response(body)

    @extend_schema(
        operation_id="wallet_payments_settle_by_id",
        tags=TAG,
        summary="Settle a held payment of a hold invoice (admin key)",
        request=PreimageRequest,
        responses={200: DETAIL, **problems(400, 401, 403, 404, 409, 503)},
    )
    def put(self, request, checking_id):
        data = PreimageRequest(data=request.data)
        data.is_valid(raise_exception=True)
        preimage = data.validated_data["preimage"]
        return _hold(services.settle_hold, self.payment_or_404(checking_id), preimage)

    @extend_schema(
        operation_id="wallet_payments_cancel_by_id",
        tags=TAG,
        summary="Cancel a hold invoice; a held payment goes back to the payer (admin key)",
        request=None,
        responses={200: DETAIL, **problems(401, 403, 404, 409, 503)},
    )
    def delete(self, request, checking_id):
        return _hold(services.cancel_hold, self.payment_or_404(checking_id))


HOLD_DONE = {services.settle_hold: "Payment settled", services.cancel_hold: "Payment cancelled"}


def _hold(action, payment: Payment, *args) -> Response:
    """Settle or cancel a hold invoice's payment: LNbits' answer, or the problem."""
    try:
        action(payment, *args)
    except services.HoldError as exc:
        raise Problem(exc.status, exc.error, str(exc)) from exc
    except NodeError as exc:
        raise _node_unavailable(exc) from exc
    return Response({"detail": HOLD_DONE[action]})


def _node_unavailable(exc: NodeError) -> Problem:
    return Problem(503, "node_unavailable", f"The Lightning node did not answer: {exc}")


class SettleView(WalletView):
    permission_classes = [AdminKeyRequired]

    @extend_schema(
        operation_id="wallet_payments_settle",
        tags=TAG,
        summary="Settle a held payment by its preimage (LNbits 1.x; admin key)",
        request=PreimageRequest,
        responses={200: DETAIL, **problems(400, 401, 403, 404, 409, 503)},
    )
    def post(self, request):
        data = PreimageRequest(data=request.data)
        data.is_valid(raise_exception=True)
        preimage = data.validated_data["preimage"]
        payment = selectors.payment_of_preimage(self.existing_wallet(), preimage)
        if payment is None:
            raise Problem(404, "not_found", "No hold invoice of this wallet has that preimage.")
        return _hold(services.settle_hold, payment, preimage)


class CancelView(WalletView):
    permission_classes = [AdminKeyRequired]

    @extend_schema(
        operation_id="wallet_payments_cancel",
        tags=TAG,
        summary="Cancel a hold invoice by its payment hash (LNbits 1.x; admin key)",
        request=PaymentHashRequest,
        responses={200: DETAIL, **problems(400, 401, 403, 404, 409, 503)},
    )
    def post(self, request):
        data = PaymentHashRequest(data=request.data)
        data.is_valid(raise_exception=True)
        payment = self.payment_or_404(data.validated_data["payment_hash"])
        return _hold(services.cancel_hold, payment)


class WalletDetailView(WalletView):
    @extend_schema(
        operation_id="wallet_retrieve",
        tags=TAG,
        summary="The wallet: its name and balance in msat (its id with the admin key)",
        parameters=[
            OpenApiParameter(
                "api-key", str, required=False, description="The key, instead of X-Api-Key."
            )
        ],
        responses={
            200: inline_serializer(
                "Wallet",
                {
                    "id": serializers.CharField(required=False),
                    "name": serializers.CharField(),
                    "balance": serializers.IntegerField(),
                },
            ),
            **problems(401),
        },
    )
    def get(self, request):
        wallet = self.wallet()
        body = {"name": wallet.name, "balance": wallet.balance_msat}
        if self.is_admin():
            body = {"id": wallet.public_id, **body}
        return Response(body)
