"""L402 endpoints: thin views over l402.services."""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout.auth import AdminKeyRequired, ApiKeyAuthentication, InvoiceKeyRequired
from config.pagination import ItemsPagination
from config.problems import PROBLEM_CONTENT_TYPE, Problem, problem_body, problem_doc, problems

from . import forwarding, manifest, services
from . import serializers as s
from .macaroons import RESOURCE, CredentialError, RequestScope, challenge_header
from .models import L402Challenge, Proxy
from .services import Offer

PAYMENT_REQUIRED = inline_serializer(
    "L402PaymentRequired",
    {
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "error": serializers.CharField(),
        "invoice": serializers.CharField(),
        "macaroon": serializers.CharField(),
        "paymentHash": serializers.CharField(),
        "amountSats": serializers.IntegerField(),
        "expiresAt": serializers.DateTimeField(),
    },
)
PAID_RESPONSES = {
    (402, PROBLEM_CONTENT_TYPE): PAYMENT_REQUIRED,
    (401, PROBLEM_CONTENT_TYPE): problem_doc(
        401, "The L402 token is invalid, unpaid, expired, or does not cover this request."
    ),
}


# --- the 402 / 401 answers ------------------------------------------------------------------


def payment_required(offer: Offer, detail: str) -> tuple[dict, dict]:
    """A fresh challenge for the offer: the problem body and the headers of a 402."""
    challenge = services.issue_challenge(offer)
    body = problem_body(402, "payment_required", detail)
    body.update(
        invoice=challenge.invoice.bolt11,
        macaroon=challenge.macaroon,
        paymentHash=challenge.invoice.payment_hash,
        amountSats=challenge.price_sats,
        expiresAt=challenge.invoice.expires_at.isoformat().replace("+00:00", "Z"),
    )
    return body, {
        "WWW-Authenticate": challenge_header(challenge.macaroon, challenge.invoice.bolt11)
    }


def _credential_refused(exc: CredentialError) -> tuple[int, dict, dict]:
    return (
        401,
        problem_body(401, exc.error, str(exc)),
        {"WWW-Authenticate": f'L402 error="{exc.error}"'},
    )


def gate(request, offer: Offer) -> tuple[int, dict, dict] | None:
    """None when the request carries a valid token for the offer; else (status, problem
    body, headers): a fresh 402 challenge, or a 401 saying what is wrong with the token."""
    scope = offer.scope
    if scope.method is None:  # the gateway's own resources: the request as it came
        body = request.body if request.META.get("CONTENT_LENGTH") else b""
        scope = replace(scope, method=request.method, path=request.path, body=body)
    try:
        token = services.authorize(request.META.get("HTTP_AUTHORIZATION", ""), scope)
    except CredentialError as exc:
        if exc.status == 402:
            return (402, *payment_required(offer, str(exc)))
        return _credential_refused(exc)
    if token is None:
        return (402, *payment_required(offer, f"pay {offer.price_sats} sats for {offer.resource}"))
    return None


def _drf(refusal: tuple[int, dict, dict]) -> Response:
    code, body, headers = refusal
    return Response(body, status=code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def _django(code: int, body: dict, headers: dict) -> JsonResponse:
    response = JsonResponse(body, status=code, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in headers.items():
        response[name] = value
    return response


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


class MerchantView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [InvoiceKeyRequired]


class AdminWritesView(MerchantView):
    """Reads with any key; writes need an admin key."""

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [InvoiceKeyRequired()]
        return [AdminKeyRequired()]


# --- merchant challenges -----------------------------------------------------------------------


def _challenge_body(challenge: L402Challenge) -> dict:
    return {
        "invoice": challenge.invoice.bolt11,
        "macaroon": challenge.macaroon,
        "paymentHash": challenge.invoice.payment_hash,
        "expiresAt": challenge.invoice.expires_at,
        "resource": challenge.resource,
        "priceSats": challenge.price_sats,
        "mppChallenge": services.payment_challenge_string(challenge),
    }


class ChallengesView(MerchantView):
    pagination_class = ItemsPagination

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=[c for c, _ in L402Challenge.Status.choices]),
        ],
        responses=s.ChallengeItem(many=True),
    )
    def get(self, request):
        wanted = request.query_params.get("status") or None
        if wanted and wanted not in L402Challenge.Status.values:
            raise Problem(
                400,
                "validation_error",
                f"status must be one of {', '.join(L402Challenge.Status.values)}",
                {"status": [f"Must be one of {', '.join(L402Challenge.Status.values)}."]},
            )
        challenges = services.list_challenges(request.merchant, wanted)
        return self.pagination_class.respond(self, challenges, s.ChallengeItem)

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
        challenge = services.create_merchant_challenge(
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
        if not data.validated_data.get("macaroon"):
            result = services.Verification(valid=False, error="the macaroon is required")
        else:
            result = services.verify_merchant_credential(
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
        return Response(services.l402_stats(request.merchant))


# --- the gateway's own paid resources ---------------------------------------------------------


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


class DemoView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, **PAID_RESPONSES})
    def get(self, request):
        refusal = gate(request, _demo_offer(DEMO[0], settings.L402_DEMO_PRICE_SATS, DEMO[1]))
        if refusal:
            return _drf(refusal)
        return Response(
            {
                "message": "Payment received: this answer was paid with Lightning.",
                "resource": "demo",
            }
        )


class PremiumDataView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, **PAID_RESPONSES})
    def get(self, request):
        offer = _demo_offer(PREMIUM[0], settings.L402_PREMIUM_PRICE_SATS, PREMIUM[1])
        refusal = gate(request, offer)
        if refusal:
            return _drf(refusal)
        return Response(
            {
                "resource": "premium-data",
                "data": {
                    "blockTimeTargetSeconds": 600,
                    "satsPerBtc": 100_000_000,
                    "halvingIntervalBlocks": 210_000,
                },
            }
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
                "schemes": ["L402", "LSAT"],
                "lightningBackend": settings.LIGHTNING_BACKEND,
                "authHeaderFormat": manifest.AUTH_HEADER_FORMAT,
            }
        )


# --- content ---------------------------------------------------------------------------------


class ContentListView(AdminWritesView):
    pagination_class = ItemsPagination

    def get_permissions(self):  # the list is public; publishing needs an admin key
        return [] if self.request.method == "GET" else [AdminKeyRequired()]

    @extend_schema(responses=s.ContentSummary(many=True), auth=[])
    def get(self, request):
        return self.pagination_class.respond(self, services.published_content(), s.ContentSummary)

    @extend_schema(
        request=s.ContentCreate,
        responses={201: s.ContentItem, **problems(409, d409="Content with this slug exists.")},
    )
    def post(self, request):
        data = s.ContentCreate(data=request.data)
        data.is_valid(raise_exception=True)
        item = services.create_content(request.merchant, **data.validated_data)
        return Response(s.ContentItem(item).data, status=status.HTTP_201_CREATED)


class ContentDetailView(APIView):
    @extend_schema(responses={200: s.ContentItem, **PAID_RESPONSES})
    def get(self, request, slug):
        item = services.get_content(slug)
        refusal = gate(request, services.content_offer(item))
        if refusal:
            return _drf(refusal)
        return Response(s.ContentItem(item).data)


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
        items = services.bundle_items(data.validated_data["slugs"])
        offer = services.bundle_offer(items)
        authorization = request.META.get("HTTP_AUTHORIZATION", "")
        try:
            token = services.authorize_bundle(authorization, items, request.method, request.path)
        except CredentialError as exc:
            if exc.status == 402:
                return _drf((402, *payment_required(offer, str(exc))))
            return _drf(_credential_refused(exc))
        if token is None:
            detail = f"pay {offer.price_sats} sats for {len(items)} items"
            return _drf((402, *payment_required(offer, detail)))
        return Response({"items": s.ContentItem(items, many=True).data})


# --- proxies (merchant API) ----------------------------------------------------------------------


def _own_proxy(request, proxy_id: str) -> Proxy:
    return get_object_or_404(
        Proxy.objects.prefetch_related("endpoints"), merchant=request.merchant, proxy_id=proxy_id
    )


class ProxyListView(AdminWritesView):
    pagination_class = ItemsPagination

    @extend_schema(responses=s.ProxySerializer(many=True))
    def get(self, request):
        proxies = Proxy.objects.filter(merchant=request.merchant).prefetch_related("endpoints")
        return self.pagination_class.respond(self, proxies, s.ProxySerializer)

    @extend_schema(request=s.ProxySerializer, responses={201: s.ProxySerializer})
    def post(self, request):
        data = s.ProxySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        proxy = services.create_proxy(
            request.merchant, auth_value=fields.pop("authValue", ""), **fields
        )
        return Response(s.ProxySerializer(proxy).data, status=status.HTTP_201_CREATED)


class ProxyDetailView(AdminWritesView):
    @extend_schema(responses=s.ProxySerializer)
    def get(self, request, proxy_id):
        return Response(s.ProxySerializer(_own_proxy(request, proxy_id)).data)

    @extend_schema(request=s.ProxySerializer, responses=s.ProxySerializer)
    def put(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        data = s.ProxySerializer(proxy, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        services.update_proxy(proxy, auth_value=fields.pop("authValue", None), **fields)
        return Response(s.ProxySerializer(_own_proxy(request, proxy_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, proxy_id):
        _own_proxy(request, proxy_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class UnpublishView(MerchantView):
    permission_classes = [AdminKeyRequired]

    @extend_schema(request=s.UnpublishRequest, responses=s.UnpublishResponse)
    def post(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        data = s.UnpublishRequest(data=request.data)
        data.is_valid(raise_exception=True)
        already = services.unpublish_proxy(proxy, data.validated_data["reason"])
        return Response({"proxyId": proxy.proxy_id, "retired": True, "alreadyRetired": already})


class EndpointsView(AdminWritesView):
    pagination_class = ItemsPagination

    @extend_schema(responses=s.ProxyEndpointSerializer(many=True))
    def get(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        endpoints = proxy.endpoints.order_by("pk")
        return self.pagination_class.respond(self, endpoints, s.ProxyEndpointSerializer)

    @extend_schema(
        request=s.ProxyEndpointSerializer,
        responses={
            201: s.ProxyEndpointSerializer,
            200: s.ProxyEndpointSerializer,
            **problems(409, d409="Another endpoint prices this method and path."),
        },
    )
    def post(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        data = s.ProxyEndpointSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        endpoint, created = services.save_endpoint(proxy, fields.pop("endpoint_id"), **fields)
        return Response(
            s.ProxyEndpointSerializer(endpoint).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class EndpointDetailView(MerchantView):
    permission_classes = [AdminKeyRequired]

    @extend_schema(responses={204: None})
    def delete(self, request, proxy_id, endpoint_id):
        proxy = _own_proxy(request, proxy_id)
        get_object_or_404(proxy.endpoints, endpoint_id=endpoint_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ManifestSettingsView(MerchantView):
    permission_classes = [AdminKeyRequired]

    @extend_schema(request=s.ManifestSettings, responses=s.ProxySerializer)
    def put(self, request, proxy_id):
        proxy = _own_proxy(request, proxy_id)
        data = s.ManifestSettings(data=request.data)
        data.is_valid(raise_exception=True)
        services.update_manifest_settings(proxy, **data.validated_data)
        return Response(s.ProxySerializer(_own_proxy(request, proxy_id)).data)


# --- the proxy itself --------------------------------------------------------------------------


def _public_proxy(proxy_id: str) -> Proxy:
    proxy = services.get_proxy_for_request(proxy_id)
    if not proxy.manifest_enabled:
        raise Problem(404, "not_found", f"the proxy {proxy_id} publishes no manifest")
    return proxy


class ProxyManifestView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, proxy_id):
        return Response(manifest.build_manifest(_public_proxy(proxy_id)))


class ProxyOpenApiView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, proxy_id):
        return Response(manifest.build_openapi(_public_proxy(proxy_id)))


PROXY_SCHEMA = extend_schema(
    description=(
        "Forward a request to the proxy's upstream. Without a valid token: 402 with an L402 "
        "challenge priced by the matching endpoint (or the proxy's default). With "
        "`Authorization: L402 <macaroon>:<preimage>` or a paid one-time `X-Api-Key`: the "
        "upstream's answer, streamed. 502 upstream unreachable, 504 upstream timeout."
    ),
    request=OpenApiTypes.BINARY,
    responses={
        (200, "*/*"): OpenApiTypes.BINARY,
        **PAID_RESPONSES,
        **problems(
            400,
            403,
            404,
            405,
            410,
            413,
            502,
            503,
            504,
            d400="The path is not a valid path (e.g. a NUL or a malformed escape).",
            d403="The path is not among the proxy's allowed paths, or is blocked.",
            d404="No such proxy.",
            d405="The proxy does not forward this method.",
            d410="The proxy was retired.",
            d503="The proxy is paused by its owner, or the Lightning node is unavailable.",
        ),
    },
)


class ProxyRequestView(APIView):
    """`/l402/proxy/{proxyId}/{path}` for every method. Disallowed methods and paths are
    refused before any invoice is made."""

    def dispatch(self, request, proxy_id, path):
        # Our own dispatch: every method is forwarded, and the body is passed on as is.
        self.args, self.kwargs = (), {"proxy_id": proxy_id, "path": path}
        self.request = request
        self.headers = {}
        try:
            return self.forward(request, proxy_id, path)
        except Problem as exc:
            return _django(
                exc.status_code,
                problem_body(exc.status_code, exc.error, str(exc.detail)),
                exc.headers,
            )

    def forward(self, request, proxy_id, path):
        proxy = services.get_proxy_for_request(proxy_id)
        target = services.route(proxy, request.method, path)
        vetted = forwarding.vet(proxy)
        body = request.body
        query = request.META.get("QUERY_STRING", "")
        one_time_key = request.META.get("HTTP_X_API_KEY", "").strip()
        if one_time_key:
            if not one_time_key.startswith(services.ONE_TIME_KEY_PREFIX):
                raise Problem(
                    401,
                    "unknown_key",
                    "X-Api-Key on the proxy takes a one-time key (otk_...) from POST /api/invoice",
                )
            services.spend_one_time_key(one_time_key, target, query, body)
        else:
            refusal = gate(request, services.proxy_offer(target, body))
            if refusal:
                return _django(*refusal)
        headers = forwarding.upstream_headers(request.META, proxy)
        return forwarding.forward(target, vetted, query, headers, body)

    @PROXY_SCHEMA
    def get(self, request, proxy_id, path):
        raise NotImplementedError  # documents the route; dispatch handles every method

    @PROXY_SCHEMA
    def post(self, request, proxy_id, path):
        raise NotImplementedError

    @PROXY_SCHEMA
    def put(self, request, proxy_id, path):
        raise NotImplementedError

    @PROXY_SCHEMA
    def patch(self, request, proxy_id, path):
        raise NotImplementedError

    @PROXY_SCHEMA
    def delete(self, request, proxy_id, path):
        raise NotImplementedError


# --- one-time keys, registry, validator, version check ------------------------------------------


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
        sold = services.sell_one_time_key(
            data.validated_data["proxyId"],
            data.validated_data["method"],
            data.validated_data["path"],
            data.validated_data["body"] or "",
        )
        return Response(
            {
                "price": str(sold.key.price_usd) if sold.key.price_usd is not None else None,
                "value": sold.key.invoice.amount_msat,
                "paymentRequest": sold.key.invoice.bolt11,
                "apikey": sold.raw,
            },
            status=status.HTTP_201_CREATED,
        )


class RegistryView(APIView):
    @extend_schema(parameters=[s.RegistryQuery], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        query = s.RegistryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        return Response(manifest.registry(q["q"], q["category"], q["page"], q["pageSize"]))


class ValidateManifestView(APIView):
    @extend_schema(
        request=OpenApiTypes.ANY,
        description="Any JSON value: the answer says whether it is a valid manifest and, if "
        "not, what is wrong with it.",
        responses=inline_serializer(
            "ManifestValidation",
            {"valid": serializers.BooleanField(), "errors": serializers.ListField()},
        ),
    )
    def post(self, request):
        errors = manifest.validate_manifest(request.data)
        return Response({"valid": not errors, "errors": errors})


class ManifestSchemaView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(manifest.MANIFEST_SCHEMA)


class VersionCheckView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "currentVersion",
                {
                    "type": "string",
                    "maxLength": 64,
                    "pattern": f"^(?:{services.VERSION_PATTERN})?$",
                },
                description="The client's version, e.g. 1.2.3 (empty or left out: just tell "
                "the latest).",
            )
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        return Response(services.mcp_version_check(request.query_params.get("currentVersion")))
