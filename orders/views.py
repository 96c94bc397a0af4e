"""The Bitrefill-compatible API (/v1, HTTP Basic as a merchant's customer) and the
merchant's API for its customers, operators, stock and orders (X-Api-Key). Views parse,
call one service, and render."""

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework import status as http_status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from checkout.views import MerchantView
from config.pagination import ItemsPagination
from config.problems import Problem, problems

from . import services
from .auth import CustomerBasicAuthentication, CustomerRequired
from .models import Customer, Operator, Order, StockCode
from .serializers import (
    CodesSerializer,
    CustomerCreateSerializer,
    OperatorSerializer,
    OrderSerializer,
    PurchaseSerializer,
    TopUpSerializer,
    operator_data,
    order_data,
)

TAG = ["orders (Bitrefill-compatible)"]
MERCHANT_TAG = ["orders: customers, operators, stock"]


def _order_fields() -> dict:
    return {
        "id": serializers.CharField(),
        "email": serializers.CharField(allow_null=True),
        "expired": serializers.BooleanField(),
        "value": serializers.CharField(),
        "product": serializers.CharField(),
        "currency": serializers.CharField(),
        "price": serializers.IntegerField(help_text="Sats."),
        "satoshiPrice": serializers.IntegerField(),
        "partialPayment": serializers.BooleanField(),
        "userRef": serializers.CharField(allow_null=True),
        "status": serializers.ChoiceField(choices=Order.Status.choices),
        "paymentMethod": serializers.CharField(),
        "payment": serializers.DictField(required=False),
        "delivery": serializers.DictField(required=False),
        "failureReason": serializers.CharField(required=False),
    }


ORDER_SHAPE = inline_serializer("SeedOrder", _order_fields())
ORDER_LIST = inline_serializer("SeedOrderItem", _order_fields(), many=True)


class CustomerView(GenericAPIView):
    authentication_classes = [CustomerBasicAuthentication]
    permission_classes = [CustomerRequired]


class TestView(CustomerView):
    @extend_schema(
        operation_id="v1_test",
        tags=TAG,
        summary="Check your credentials",
        responses={(200, "text/plain"): str, **problems(401)},
    )
    def get(self, request):
        return HttpResponse("Hello World!", content_type="text/plain")


class InventoryView(CustomerView):
    @extend_schema(
        operation_id="v1_inventory",
        tags=TAG,
        summary="A product (the seed's operator): its range or packages and prices",
        responses={
            200: inline_serializer("Inventory", {"operator": serializers.DictField()}),
            **problems(401, 404),
        },
    )
    def get(self, request, slug):
        return Response(
            {"operator": operator_data(services.operator_of(request.customer.merchant, slug))}
        )


def _order(request, serializer_class, method) -> Response:
    """200 (not 201), as the seed's clients expect."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return Response(
        order_data(services.create_order(request.customer, data.validated_data, method))
    )


class OrderCreateView(CustomerView):
    @extend_schema(
        operation_id="v1_order_create",
        tags=TAG,
        summary="Order, paid with Lightning (the answer carries the invoice)",
        request=OrderSerializer,
        responses={200: ORDER_SHAPE, **problems(400, 401, 404, 409, 503)},
    )
    def post(self, request):
        return _order(request, OrderSerializer, Order.PaymentMethod.LIGHTNING)


class PurchaseView(CustomerView):
    @extend_schema(
        operation_id="v1_purchase",
        tags=TAG,
        summary="Order and pay from your account balance (answers payment_pending)",
        request=PurchaseSerializer,
        responses={200: ORDER_SHAPE, **problems(400, 401, 404, 409, 503)},
    )
    def post(self, request):
        return _order(request, PurchaseSerializer, Order.PaymentMethod.BALANCE)


class OrderDetailView(CustomerView):
    @extend_schema(
        operation_id="v1_order_retrieve",
        tags=TAG,
        summary="An order's status (the same body its webhook_url receives)",
        responses={200: ORDER_SHAPE, **problems(401, 404)},
    )
    def get(self, request, order_id):
        return Response(order_data(services.order_of(request.customer, order_id)))


BALANCE = inline_serializer(
    "AccountBalance",
    {
        "balance": serializers.IntegerField(help_text="Sats."),
        "balanceMsat": serializers.IntegerField(),
        "currency": serializers.CharField(),
    },
)


class BalanceView(CustomerView):
    @extend_schema(
        operation_id="v1_account_balance",
        tags=TAG,
        summary="Your account balance (for POST /v1/purchase)",
        responses={200: BALANCE, **problems(401)},
    )
    def get(self, request):
        wallet = request.customer.wallet
        wallet.refresh_from_db(fields=["balance_msat"])
        return Response(
            {
                "balance": wallet.balance_msat // 1000,
                "balanceMsat": wallet.balance_msat,
                "currency": "SAT",
            }
        )


class TopUpView(CustomerView):
    @extend_schema(
        operation_id="v1_account_balance_topup",
        tags=TAG,
        summary="An invoice that tops up your account balance",
        request=TopUpSerializer,
        responses={
            201: inline_serializer(
                "TopUp",
                {
                    "paymentRequest": serializers.CharField(),
                    "paymentHash": serializers.CharField(),
                    "amount": serializers.IntegerField(),
                    "expiresAt": serializers.DateTimeField(),
                },
            ),
            **problems(400, 401, 503),
        },
    )
    def post(self, request):
        data = TopUpSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payment = services.top_up(request.customer, data.validated_data["amount"])
        return Response(
            {
                "paymentRequest": payment.bolt11,
                "paymentHash": payment.payment_hash,
                "amount": payment.amount_msat // 1000,
                "expiresAt": payment.expires_at,
            },
            status=http_status.HTTP_201_CREATED,
        )


# --- the merchant's side ------------------------------------------------------------------


def customer_data(customer: Customer) -> dict:
    return {
        "customerId": customer.public_id,
        "name": customer.name,
        "apiKey": customer.api_key,
        "balance": customer.wallet.balance_msat // 1000,
        "createdAt": customer.created_at,
        "revoked": customer.revoked_at is not None,
    }


class CustomerListView(MerchantView):
    pagination_class = ItemsPagination
    serializer_class = CustomerCreateSerializer

    @extend_schema(
        operation_id="orders_customers_create",
        tags=MERCHANT_TAG,
        summary="Issue credentials to a reseller (admin key); the secret is shown once",
        request=CustomerCreateSerializer,
        responses={
            201: inline_serializer(
                "CustomerCreated",
                {
                    "customerId": serializers.CharField(),
                    "apiKey": serializers.CharField(),
                    "apiSecret": serializers.CharField(),
                },
            ),
            **problems(400, 401, 403),
        },
    )
    def post(self, request):
        data = CustomerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer, secret = services.create_customer(request.merchant, data.validated_data["name"])
        return Response(
            {**customer_data(customer), "apiSecret": secret}, status=http_status.HTTP_201_CREATED
        )

    @extend_schema(
        operation_id="orders_customers_list",
        tags=MERCHANT_TAG,
        summary="Your resellers",
        responses={
            200: inline_serializer("Customer", {"customerId": serializers.CharField()}, many=True),
            **problems(401),
        },
    )
    def get(self, request):
        rows = (
            Customer.objects.filter(merchant=request.merchant)
            .select_related("wallet")
            .order_by("-id")
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response([customer_data(c) for c in page])


class OperatorListView(MerchantView):
    pagination_class = ItemsPagination
    serializer_class = OperatorSerializer

    @extend_schema(
        operation_id="orders_operators_create",
        tags=MERCHANT_TAG,
        summary="Add a product resellers can order (admin key)",
        request=OperatorSerializer,
        responses={
            201: inline_serializer("Operator", {"operator": serializers.DictField()}),
            **problems(400, 401, 403, 409),
        },
    )
    def post(self, request):
        data = OperatorSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        bounds = values.pop("range", None) or {}
        if Operator.objects.filter(merchant=request.merchant, slug=values["slug"]).exists():
            raise Problem(409, "slug_taken", f"You have a product {values['slug']!r} already.")
        operator = Operator.objects.create(
            merchant=request.merchant,
            range_min=bounds.get("min"),
            range_max=bounds.get("max"),
            range_step=bounds.get("step", 1),
            **values,
        )
        return Response({"operator": operator_data(operator)}, status=http_status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="orders_operators_list",
        tags=MERCHANT_TAG,
        summary="Your products for resellers",
        responses={
            200: inline_serializer(
                "OperatorItem", {"operator": serializers.DictField()}, many=True
            ),
            **problems(401),
        },
    )
    def get(self, request):
        rows = Operator.objects.filter(merchant=request.merchant).order_by("slug")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response([operator_data(o) for o in page])


class CodesView(MerchantView):
    serializer_class = CodesSerializer

    @extend_schema(
        operation_id="orders_operator_codes_add",
        tags=MERCHANT_TAG,
        summary="Upload codes to a product's stock (admin key)",
        request=CodesSerializer,
        responses={
            201: inline_serializer(
                "Stock",
                {"added": serializers.IntegerField(), "inStock": serializers.IntegerField()},
            ),
            **problems(400, 401, 403, 404),
        },
    )
    def post(self, request, slug):
        operator = Operator.objects.filter(merchant=request.merchant, slug=slug).first()
        if operator is None:
            raise Problem(404, "not_found", f"No product {slug!r}.")
        data = CodesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        StockCode.objects.bulk_create(
            [StockCode(operator=operator, code=code) for code in data.validated_data["codes"]]
        )
        in_stock = operator.codes.filter(order__isnull=True).count()
        return Response(
            {"added": len(data.validated_data["codes"]), "inStock": in_stock},
            status=http_status.HTTP_201_CREATED,
        )


class MerchantOrderListView(MerchantView):
    pagination_class = ItemsPagination
    serializer_class = OrderSerializer

    @extend_schema(
        operation_id="orders_list",
        tags=MERCHANT_TAG,
        summary="Your resellers' orders, newest first",
        parameters=[OpenApiParameter("status", str, enum=Order.Status.values)],
        responses={200: ORDER_LIST, **problems(400, 401)},
    )
    def get(self, request):
        rows = Order.objects.filter(merchant=request.merchant).select_related("operator", "invoice")
        status = request.query_params.get("status")
        if status is not None:
            if status not in Order.Status.values:
                raise Problem(
                    400, "validation_error", "Unknown status.", {"status": ["Unknown status."]}
                )
            rows = rows.filter(status=status)
        page = self.paginate_queryset(rows.order_by("-id"))
        return self.get_paginated_response([order_data(o) for o in page])
