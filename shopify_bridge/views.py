"""The Shopify bridge's API: thin views that validate, call one service, and render."""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout.auth import AdminKeyRequired, ApiKeyAuthentication, InvoiceKeyRequired
from config import parsers
from config.pagination import ItemsPagination
from config.problems import PROBLEM_CONTENT_TYPE, Problem, problem_body, problems
from config.ratelimit import enforce_rate

from . import services
from .catalog import catalog_document
from .models import ShopifyStore
from .serializers import (
    ShopifyCatalogSerializer,
    ShopifyChallengeSerializer,
    ShopifyCheckoutSerializer,
    ShopifyClaimResultSerializer,
    ShopifyClaimSerializer,
    ShopifyOrderStatusSerializer,
    ShopifyPaidCheckoutSerializer,
    ShopifyStatsSerializer,
    ShopifyStoreSerializer,
    ShopifyStoreUpdateSerializer,
    ShopifySyncQueuedSerializer,
)

TAG = "shopify"


class MerchantView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AdminKeyRequired]


class StoreListView(MerchantView):
    pagination_class = ItemsPagination

    @extend_schema(
        tags=[TAG],
        operation_id="shopify_stores_list",
        responses={200: ShopifyStoreSerializer(many=True)},
    )
    def get(self, request):
        stores = ShopifyStore.objects.filter(merchant=request.merchant).order_by("created_at")
        return self.pagination_class.respond(self, stores, ShopifyStoreSerializer)

    @extend_schema(
        tags=[TAG],
        operation_id="shopify_stores_create",
        request=ShopifyStoreSerializer,
        responses={201: ShopifyStoreSerializer, **problems(409, d409="A store has this slug.")},
    )
    def post(self, request):
        serializer = ShopifyStoreSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        store = services.create_store(request.merchant, **serializer.validated_data)
        return Response(ShopifyStoreSerializer(store).data, status=status.HTTP_201_CREATED)


class StoreDetailView(MerchantView):
    @extend_schema(
        tags=[TAG],
        operation_id="shopify_stores_retrieve",
        responses=ShopifyStoreSerializer,
    )
    def get(self, request, slug):
        store = services.store_of_merchant(request.merchant, slug)
        return Response(ShopifyStoreSerializer(store).data)

    @extend_schema(
        tags=[TAG],
        operation_id="shopify_stores_update",
        request=ShopifyStoreUpdateSerializer,
        responses=ShopifyStoreSerializer,
    )
    def patch(self, request, slug):
        store = services.store_of_merchant(request.merchant, slug)
        serializer = ShopifyStoreUpdateSerializer(store, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        store = services.update_store(store, **serializer.validated_data)
        return Response(ShopifyStoreSerializer(store).data)

    @extend_schema(
        tags=[TAG],
        operation_id="shopify_stores_delete",
        responses={
            204: None,
            **problems(409, d409="The store has orders; deactivate it instead."),
        },
    )
    def delete(self, request, slug):
        services.delete_store(services.store_of_merchant(request.merchant, slug))
        return Response(status=status.HTTP_204_NO_CONTENT)


class StoreSyncView(MerchantView):
    @extend_schema(
        tags=[TAG],
        operation_id="shopify_stores_sync",
        request=None,
        responses={202: ShopifySyncQueuedSerializer},
    )
    def post(self, request, slug):
        """Queue a catalog sync from Shopify now (it also runs on a schedule)."""
        from .tasks import sync_store_catalog

        store = services.store_of_merchant(request.merchant, slug)
        sync_store_catalog.delay(store.pk)
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


class CatalogView(APIView):
    @extend_schema(
        tags=[TAG],
        operation_id="shopify_catalog",
        responses={200: ShopifyCatalogSerializer, 304: None},
    )
    def get(self, request, slug):
        """Public: the store's products and variants, from the local copy. Cacheable
        (ETag, Cache-Control); send If-None-Match to get a 304 when nothing changed."""
        store = services.store_for_public(slug)
        body, etag = catalog_document(store)
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={settings.SHOPIFY_CATALOG_MAX_AGE}",
        }
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            response = HttpResponse(status=304)
        else:
            response = HttpResponse(body, content_type="application/json")
        for name, value in headers.items():
            response[name] = value
        return response


class CheckoutView(APIView):
    @extend_schema(
        tags=[TAG],
        operation_id="shopify_checkout",
        request=ShopifyCheckoutSerializer,
        parameters=[
            OpenApiParameter(
                "Authorization",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="L402 <macaroon>:<preimage> after paying the 402's invoice.",
            )
        ],
        responses={
            200: ShopifyPaidCheckoutSerializer,
            (402, PROBLEM_CONTENT_TYPE): ShopifyChallengeSerializer,
            **problems(
                401,
                409,
                429,
                503,
                d401="The L402 credential is invalid, or not for this store's order.",
            ),
        },
    )
    def post(self, request, slug):
        """Public. Without credentials: price the cart, answer 402 with an L402 challenge
        (invoice + macaroon). Retried with `Authorization: L402 <macaroon>:<preimage>`:
        200 with the claim token for handing in email and shipping address."""
        store = services.store_for_public(slug)
        order = services.redeem_credential(store, request.headers.get("Authorization", ""))
        if order is not None:
            return Response(
                {
                    "orderId": order.public_id,
                    "status": order.status,
                    "claimToken": services.claim_token(order.public_id),
                    "claimPageUrl": services.claim_page_url(store),
                },
                headers={"Cache-Control": "no-store"},
            )
        serializer = ShopifyCheckoutSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        enforce_rate(request, "shopify-checkout", settings.SHOPIFY_CHECKOUT_RATE_PER_MINUTE, 60)
        order = services.start_checkout(store, serializer.validated_data["items"])
        fields, headers = services.challenge(order)
        body = problem_body(
            402, "payment_required", "Pay the invoice, then retry with the L402 credential."
        )
        return Response(
            {**body, **fields},
            status=402,
            headers={**headers, "Cache-Control": "no-store"},
            content_type=PROBLEM_CONTENT_TYPE,
        )


class ClaimView(APIView):
    @extend_schema(
        tags=[TAG],
        operation_id="shopify_claim",
        request=ShopifyClaimSerializer,
        responses={200: ShopifyClaimResultSerializer, **problems(429)},
    )
    def post(self, request, slug):
        """Public: hand in email and shipping address with the claim token of a paid order.
        The token works once; a wrong or spent token gets the same 404."""
        enforce_rate(request, "shopify-claim", settings.SHOPIFY_CLAIM_RATE_PER_MINUTE, 60)
        store = services.store_for_public(slug)
        serializer = ShopifyClaimSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        order = services.claim_order(
            store, data["claimToken"], data["email"], data["shippingAddress"]
        )
        return Response(claim_result(order), headers={"Cache-Control": "no-store"})


def claim_result(order) -> dict:
    return {
        "orderId": order.public_id,
        "status": order.status,
        "shopifyOrderNumber": order.shopify_order_number or None,
        "claimPageUrl": services.claim_page_url(order.store),
        "message": services.claim_message(order),
    }


class OrderStatusView(APIView):
    authentication_classes = [ApiKeyAuthentication]

    @extend_schema(
        tags=[TAG],
        operation_id="shopify_order_status",
        parameters=[OpenApiParameter("claimToken", OpenApiTypes.STR, OpenApiParameter.QUERY)],
        responses={200: ShopifyOrderStatusSerializer, **problems(429)},
    )
    def get(self, request, slug, orderId):
        """The order's status and tracking, for its buyer (`?claimToken=`) or its merchant
        (`X-Api-Key`)."""
        if request.auth is not None:
            order = services.order_for_merchant(request.merchant, slug, orderId)
        else:
            enforce_rate(request, "shopify-claim", settings.SHOPIFY_CLAIM_RATE_PER_MINUTE, 60)
            store = services.store_for_public(slug)
            token = request.query_params.get("claimToken", "")
            order = services.order_for_buyer(store, orderId, token)
        body = ShopifyOrderStatusSerializer(order).data
        return Response(body, headers={"Cache-Control": "no-store"})


class ShopifyWebhookView(APIView):
    @extend_schema(
        tags=[TAG],
        operation_id="shopify_webhooks_receive",
        request=OpenApiTypes.OBJECT,
        parameters=[
            OpenApiParameter(
                "X-Shopify-Hmac-Sha256", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True
            ),
            OpenApiParameter(
                "X-Shopify-Topic", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True
            ),
        ],
        responses={
            200: OpenApiTypes.OBJECT,
            **problems(401, d401="The X-Shopify-Hmac-Sha256 signature does not match."),
        },
    )
    def post(self, request, slug):
        """Shopify's orders/fulfilled and fulfillments/* webhooks: tracking, and Shipped."""
        store = services.store_for_public(slug)
        raw = request.body
        services.check_shopify_signature(
            store, raw, request.headers.get("X-Shopify-Hmac-Sha256", "")
        )
        try:
            payload = parsers.loads(raw)
        except ValueError as exc:
            raise Problem(400, "malformed_json", f"The webhook body is not JSON: {exc}") from None
        shipped = services.receive_shopify_webhook(
            store, request.headers.get("X-Shopify-Topic", ""), payload
        )
        return Response({"received": True, "shipped": shipped})


class ShopifyStatsView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [InvoiceKeyRequired]

    @extend_schema(
        tags=["stats"], operation_id="stats_shopify", responses={200: ShopifyStatsSerializer}
    )
    def get(self, request):
        """Orders and revenue (USD and sats) by state and by store, for this merchant."""
        return Response(services.shopify_stats(request.merchant))
