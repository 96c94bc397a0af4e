"""The answers of a paid view: admitted (with the headers the paid answer carries) when
the request carries a good L402 token or MPP `Payment` credential for the offer; else a
fresh 402 challenge (no credential, or one that does not pay for this: for something else,
expired, foreign), or a 401 when the Authorization header is malformed. Clients pay on a
402 (l402-requests, @getalby/lightning-tools), so a token bought for another endpoint gets
them a new challenge, not a dead end; the body's `reason` says why the credential was not
enough. And the OpenAPI description of those answers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from django.http import JsonResponse
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from config.problems import PROBLEM_CONTENT_TYPE, problem_body, problem_doc

from ..macaroons import CredentialError, RequestScope, challenge_header
from ..services import challenges, credentials
from ..services.offers import Offer

PAYMENT_REQUIRED = inline_serializer(
    "L402PaymentRequired",
    {
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "error": serializers.CharField(),
        "reason": serializers.CharField(
            required=False,
            help_text="Why the credential sent was not enough (token_out_of_scope, "
            "token_expired, invalid_preimage, ...); absent when none was sent.",
        ),
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
        401, "The Authorization header is a malformed L402 or Payment credential."
    ),
}


def payment_required(offer: Offer, detail: str, reason: str | None = None) -> tuple[dict, dict]:
    """A fresh challenge for the offer, as MPP `Payment` and as L402 (and LSAT): the
    problem body and the headers of a 402. `Payment` comes first, as MPP clients want."""
    challenge = challenges.issue_challenge(offer)
    body = problem_body(402, "payment_required", detail)
    if reason:
        body["reason"] = reason
    body.update(
        invoice=challenge.invoice.bolt11,
        macaroon=challenge.macaroon,
        paymentHash=challenge.invoice.payment_hash,
        amountSats=challenge.price_sats,
        expiresAt=challenge.invoice.expires_at.isoformat().replace("+00:00", "Z"),
    )
    offers = [
        challenges.payment_challenge_string(challenge, offer.resource),
        challenge_header(challenge.macaroon, challenge.invoice.bolt11),
    ]
    return body, {"WWW-Authenticate": ", ".join(offers)}


def credential_refused(exc: CredentialError) -> tuple[int, dict, dict]:
    return (
        401,
        problem_body(401, exc.error, str(exc)),
        {"WWW-Authenticate": f'L402 error="{exc.error}"'},
    )


@dataclass(frozen=True)
class Admission:
    """`refusal` (status, problem body, headers) to answer instead, or None: admitted, and
    the paid answer carries `headers`."""

    refusal: tuple[int, dict, dict] | None = None
    headers: dict = field(default_factory=dict)


def gate(request, offer: Offer, scopes: list[RequestScope] | None = None) -> Admission:
    """Is this request paid for? `scopes`: what an L402 token must hold for (default: the
    offer's scope, completed with the request as it came)."""
    if scopes is None:
        scope = offer.scope
        if scope.method is None:  # the gateway's own resources: the request as it came
            body = request.body if request.META.get("CONTENT_LENGTH") else b""
            scope = replace(scope, method=request.method, path=request.path, body=body)
        scopes = [scope]
    try:
        headers = credentials.admit(request.META.get("HTTP_AUTHORIZATION", ""), offer, scopes)
    except CredentialError as exc:
        if exc.error.startswith("malformed_"):
            return Admission(refusal=credential_refused(exc))
        return Admission(refusal=(402, *payment_required(offer, str(exc), exc.error)))
    if headers is None:
        detail = f"pay {offer.price_sats} sats for {offer.resource}"
        return Admission(refusal=(402, *payment_required(offer, detail)))
    return Admission(headers=headers)


def drf_problem(refusal: tuple[int, dict, dict]) -> Response:
    """A refusal as the answer of a DRF view."""
    code, body, headers = refusal
    return Response(body, status=code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def django_problem(code: int, body: dict, headers: dict) -> JsonResponse:
    """A problem as the answer of a view that bypasses DRF (the proxy)."""
    response = JsonResponse(body, status=code, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in headers.items():
        response[name] = value
    return response
