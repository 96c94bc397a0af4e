"""The merchant REST API of checkout: products and checkout invoices, plus the keyless
product checkout a storefront starts from the browser. Views parse, call one service, and
render; the rules are in checkout.services."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status as http_status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from config.pagination import ItemsPagination
from config.problems import Problem, problems
from config.ratelimit import enforce_rate

from . import selectors, services
from .auth import AdminKeyRequired, ApiKeyAuthentication, InvoiceKeyRequired
from .serializers import (
    CHECKOUT_INVOICE_REQUEST,
    PRODUCT_REQUEST,
    CheckoutInvoiceCreateSerializer,
    CheckoutInvoiceSerializer,
    ProductCheckoutSerializer,
    ProductSerializer,
)


class MerchantView(GenericAPIView):
    """An endpoint of the merchant API: X-Api-Key; reads with any key, writes with an admin
    key unless the view says otherwise."""

    authentication_classes = [ApiKeyAuthentication]
    write_permission = AdminKeyRequired

    def get_permissions(self):
        if self.request is not None and self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [InvoiceKeyRequired()]
        return [self.write_permission()]


PRODUCTS_TAG = ["checkout products"]
INVOICES_TAG = ["checkout invoices"]


class ProductListView(MerchantView):
    serializer_class = ProductSerializer
    pagination_class = ItemsPagination

    @extend_schema(
        operation_id="checkout_products_list",
        tags=PRODUCTS_TAG,
        summary="List your products (archived ones are left out)",
        parameters=[
            OpenApiParameter("active", bool, description="Only active (or only inactive) ones.")
        ],
        responses={200: ProductSerializer(many=True), **problems(400, 401)},
    )
    def get(self, request):
        active = request.query_params.get("active")
        if active not in (None, "true", "false"):
            raise Problem(
                400,
                "validation_error",
                "active must be true or false.",
                {"active": ["Must be true or false."]},
            )
        products = selectors.products_of(
            request.merchant, None if active is None else active == "true"
        )
        page = self.paginate_queryset(products)
        return self.get_paginated_response(ProductSerializer(page, many=True).data)

    @extend_schema(
        operation_id="checkout_products_create",
        tags=PRODUCTS_TAG,
        summary="Add a product (admin key)",
        request=PRODUCT_REQUEST,
        responses={201: ProductSerializer, **problems(400, 401, 403)},
    )
    def post(self, request):
        data = ProductSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.create_product(request.merchant, **data.validated_data)
        return Response(ProductSerializer(product).data, status=http_status.HTTP_201_CREATED)


class ProductDetailView(MerchantView):
    serializer_class = ProductSerializer

    def get_product(self, product_id):
        product = selectors.product_of(self.request.merchant, product_id)
        if product is None:
            raise Problem(404, "not_found", f"No product {product_id}.")
        return product

    @extend_schema(
        operation_id="checkout_products_retrieve",
        tags=PRODUCTS_TAG,
        summary="Get a product",
        responses={200: ProductSerializer, **problems(401, 404)},
    )
    def get(self, request, productId):
        return Response(ProductSerializer(self.get_product(productId)).data)

    def _update(self, request, product_id, partial):
        product = self.get_product(product_id)
        data = ProductSerializer(product, data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        product = services.update_product(product, **data.validated_data)
        return Response(ProductSerializer(product).data)

    @extend_schema(
        operation_id="checkout_products_update",
        tags=PRODUCTS_TAG,
        summary="Replace a product (admin key)",
        request=PRODUCT_REQUEST,
        responses={200: ProductSerializer, **problems(400, 401, 403, 404)},
    )
    def put(self, request, productId):
        return self._update(request, productId, partial=False)

    @extend_schema(
        operation_id="checkout_products_partial_update",
        tags=PRODUCTS_TAG,
        summary="Change some fields of a product (admin key)",
        request=ProductSerializer(partial=True),
        responses={200: ProductSerializer, **problems(400, 401, 403, 404)},
    )
    def patch(self, request, productId):
        return self._update(request, productId, partial=True)

    @extend_schema(
        operation_id="checkout_products_destroy",
        tags=PRODUCTS_TAG,
        summary="Delete a product (admin key)",
        description="A product that checkouts were made for is archived instead: it keeps "
        "its place in those checkouts but is gone from the API and can no longer be bought.",
        responses={204: None, **problems(401, 403, 404)},
    )
    def delete(self, request, productId):
        services.remove_product(self.get_product(productId))
        return Response(status=http_status.HTTP_204_NO_CONTENT)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 256},
    OpenApiParameter.HEADER,
    description="A retry with the same key (and the same body) returns the first invoice "
    "instead of making a second one. At most 256 characters.",
)
STATUS_FILTER = OpenApiParameter(
    "status", str, enum=["unpaid", "paid", "expired"], description="Only checkouts in this state."
)


class CheckoutInvoiceListView(MerchantView):
    serializer_class = CheckoutInvoiceSerializer
    pagination_class = ItemsPagination
    write_permission = InvoiceKeyRequired

    @extend_schema(
        operation_id="checkout_invoices_list",
        tags=INVOICES_TAG,
        summary="List your checkout invoices, newest first",
        parameters=[STATUS_FILTER],
        responses={200: CheckoutInvoiceSerializer(many=True), **problems(400, 401)},
    )
    def get(self, request):
        status = request.query_params.get("status")
        if status is not None and status not in selectors.CHECKOUT_STATUSES:
            raise Problem(
                400,
                "validation_error",
                "status must be unpaid, paid or expired.",
                {"status": ["Must be unpaid, paid or expired."]},
            )
        page = self.paginate_queryset(selectors.checkouts_of(request.merchant, status))
        return self.get_paginated_response(CheckoutInvoiceSerializer(page, many=True).data)

    @extend_schema(
        operation_id="checkout_invoices_create",
        tags=INVOICES_TAG,
        summary="Create a checkout invoice (invoice key)",
        parameters=[IDEMPOTENCY_KEY],
        request=CHECKOUT_INVOICE_REQUEST,
        responses={
            201: CheckoutInvoiceSerializer,
            **problems(400, 401, 404, 409, 422, 503, d404="productId names no product of yours."),
        },
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 256:
            raise Problem(
                400,
                "validation_error",
                "The Idempotency-Key header must be 1 to 256 characters.",
                {"Idempotency-Key": ["Must be 1 to 256 characters."]},
            )
        data = CheckoutInvoiceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        checkout, created = services.create_checkout_invoice(
            request.merchant, data.validated_data, idempotency_key=key
        )
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(
            CheckoutInvoiceSerializer(checkout).data,
            status=http_status.HTTP_201_CREATED,
            headers=headers,
        )


class CheckoutInvoiceDetailView(MerchantView):
    serializer_class = CheckoutInvoiceSerializer

    @extend_schema(
        operation_id="checkout_invoices_retrieve",
        tags=INVOICES_TAG,
        summary="Get a checkout invoice",
        responses={200: CheckoutInvoiceSerializer, **problems(401, 404)},
    )
    def get(self, request, invoiceId):
        checkout = selectors.checkout_of(request.merchant, invoiceId)
        if checkout is None:
            raise Problem(404, "not_found", f"No checkout invoice {invoiceId}.")
        return Response(CheckoutInvoiceSerializer(checkout).data)


class ProductCheckoutView(GenericAPIView):
    """Public: start a checkout of an active product, without a key (a payment link)."""

    authentication_classes = []
    permission_classes = []
    serializer_class = ProductCheckoutSerializer

    @extend_schema(
        operation_id="checkout_products_checkout",
        tags=PRODUCTS_TAG,
        summary="Start a checkout of a product, without a key (rate-limited per address)",
        description="For a storefront's buy button or a payment link. The body is optional. "
        "The answer is a checkout invoice; send the buyer to its checkoutUrl.",
        request=ProductCheckoutSerializer,
        auth=[],
        responses={201: CheckoutInvoiceSerializer, **problems(400, 404, 429, 503)},
    )
    def post(self, request, productId):
        enforce_rate(
            request, "checkout-public", settings.CHECKOUT_PUBLIC_RATE_PER_MINUTE, period=60
        )
        data = ProductCheckoutSerializer(data=request.data)  # no body: {}; null: a 400
        data.is_valid(raise_exception=True)
        checkout = services.start_product_checkout(productId, data.validated_data)
        return Response(
            CheckoutInvoiceSerializer(checkout).data, status=http_status.HTTP_201_CREATED
        )
