"""The paid reverse proxy itself: `/l402/proxy/{proxyId}/{path}`, every method, the body
passed on byte for byte. It bypasses DRF's request handling (no parsing, authentication or
content negotiation): the request goes to the upstream as it came."""

from __future__ import annotations

from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from config.problems import Problem, problem_body, problems

from .. import forwarding
from ..serializers import GraphqlInvoiceRequest, OneTimeKeyResponse
from ..services import one_time_keys, proxies
from .gate import PAID_RESPONSES, django_problem, gate
from .keys import sold_key_body

PROXIED = {
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
        d400="The path is not a valid path (e.g. a NUL or a malformed escape); or, for a "
        "GraphQL invoice, the body is not a GraphQL request.",
        d403="The path is not among the proxy's allowed paths, or is blocked.",
        d404="No such proxy.",
        d405="The proxy does not forward this method.",
        d410="The proxy was retired.",
        d503="The proxy is paused by its owner, or the Lightning node is unavailable.",
    ),
}


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
            return django_problem(
                exc.status_code,
                problem_body(exc.status_code, exc.error, str(exc.detail), exc.errors),
                exc.headers,
            )

    @extend_schema(
        description=(
            "Forward a request to the proxy's upstream. Without a credential that pays for it: "
            "402 with a Payment (MPP), L402 and LSAT challenge priced by the matching endpoint "
            "(or the proxy's default). With `Authorization: L402 <macaroon>:<preimage>`, "
            "`Authorization: Payment <credential>` or a paid one-time `X-Api-Key`: the "
            "upstream's answer, streamed. 502 upstream unreachable, 504 upstream timeout."
        ),
        request=OpenApiTypes.BINARY,
        responses=PROXIED,
    )
    def forward(self, request, proxy_id, path):
        proxy = proxies.get_proxy_for_request(proxy_id)
        target = proxies.route(proxy, request.method, path)
        vetted = forwarding.vet(proxy)
        body = request.body
        query = request.META.get("QUERY_STRING", "")
        one_time_key = request.META.get("HTTP_X_API_KEY", "").strip()
        if one_time_key:
            if not one_time_key.startswith(one_time_keys.ONE_TIME_KEY_PREFIX):
                raise Problem(
                    401,
                    "unknown_key",
                    "X-Api-Key on the proxy takes a one-time key (otk_...) from POST /api/invoice",
                )
            one_time_keys.spend_one_time_key(one_time_key, target, query, body)
            receipt = {}
        else:
            paid = gate(request, proxies.proxy_offer(target, body))
            if paid.refusal:
                return django_problem(*paid.refusal)
            receipt = paid.headers
        headers = forwarding.upstream_headers(request.META, proxy)
        response = forwarding.forward(target, vetted, query, headers, body)
        for name, value in receipt.items():
            response[name] = value
        return response

    # dispatch sends every method to forward (HEAD, OPTIONS and the rest too). These names
    # are how DRF's allowed_methods, and so drf-spectacular, learn which operations the
    # route has; they carry forward's schema. HEAD and OPTIONS are never documented.
    get = post = put = patch = delete = forward


class GraphqlInvoiceView(ProxyRequestView):
    """`/l402/proxy/{proxyId}/api/invoice`. On a GraphQL proxy, POST is Blocktap's invoice
    API: the body is the GraphQL request, the answer `{price, value, paymentRequest,
    apikey}`; the key then runs `POST /l402/proxy/{proxyId}/graphql` with the same body,
    once. On any other proxy, and for every other method, the path is proxied like any."""

    def dispatch(self, request, proxy_id):
        return super().dispatch(request, proxy_id, "api/invoice")

    @extend_schema(
        description=(
            "On a proxy marked `graphql`: Blocktap's invoice API. The body is a GraphQL request "
            "({query, operation, variables}); the answer an invoice and a one-time key: once "
            "the invoice is paid, `POST /l402/proxy/{proxyId}/graphql` with exactly the same "
            "body and `X-Api-Key: <apikey>` runs it once. On any other proxy this path is "
            "proxied like every other (see `/l402/proxy/{proxyId}/{path}`)."
        ),
        request=GraphqlInvoiceRequest,
        responses={(200, "application/json"): OneTimeKeyResponse, **PROXIED},
    )
    def forward(self, request, proxy_id, path):
        if request.method == "POST":
            proxy = proxies.get_proxy_for_request(proxy_id)
            if proxy.graphql:
                sold = one_time_keys.sell_graphql_key(proxy, request.body)
                return JsonResponse(sold_key_body(sold))
        return super().forward(request, proxy_id, path)

    post = forward
