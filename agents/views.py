"""The agent registry API: parse, call one service or selector, render."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout.auth import ApiKeyAuthentication
from checkout.models import ApiKey
from config.pagination import ItemsPagination
from config.problems import Problem, problems
from config.ratelimit import enforce_rate

from . import selectors, services
from . import serializers as s
from .auth import (
    AgentActorRequired,
    NostrAuthentication,
    NostrKeyAuthentication,
    NostrKeyProof,
    acting_agent,
)
from .models import Agreement

AGENT_AUTH = [NostrAuthentication, ApiKeyAuthentication]
# What acting as an agent can answer besides the answer itself.
ACTING_PROBLEMS = problems(
    400,
    403,
    404,
    d400="Invalid input; or, with X-Api-Key and no `pubkey`: the merchant acts for no verified "
    "agent (`no_agent`, saying how to verify one) or for several (naming them).",
    d403="Writes for an agent need an admin key; the agent is inactive or unverified; or the "
    "signed event is not from `pubkey`.",
    d404="This merchant does not act for an agent with this pubkey, or no such item.",
)
ACTING_DOC = (
    "Acting as an agent: NIP-98 (`Authorization: Nostr <base64 kind-27235 event>`) signed by "
    "a verified agent, or `X-Api-Key` of the merchant it chose as owner (`pubkey` names the "
    "agent; left out, the merchant's only verified agent: a merchant with none, or several, "
    "gets a 400 saying what to do)."
)


class AgentsPagination(ItemsPagination):
    items_key = "agents"


def _rate_limit(request, scope: str, limit: int) -> None:
    enforce_rate(request, f"agents-{scope}", limit, settings.AGENTS_RATE_LIMIT_PERIOD_SECONDS)


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class RegisterView(APIView):
    authentication_classes = [NostrKeyAuthentication, ApiKeyAuthentication]

    @extend_schema(
        request=s.AgentRegistrationSerializer,
        responses={
            201: s.AgentSerializer,
            200: s.AgentSerializer,
            **problems(
                403,
                409,
                429,
                d403="An invoice key, or a signed event that is not from `pubkey`.",
                d409="agent_exists: a verified agent changes only by its own signature.",
            ),
        },
        summary="Register an agent by its x-only public key",
        description="Public; rate-limited per client address. 201: registered. 200: the "
        "name and description of an agent whose key has not proven itself yet were replaced "
        "(anyone may, so registering a key first cannot squat it). Signed by the key itself "
        "(NIP-98, `Authorization: Nostr ...` with a `payload` tag) the registration is "
        "verified at once, and is the only way to change a verified agent (else 409 "
        "agent_exists). An admin `X-Api-Key` is accepted but makes no owner: a merchant acts "
        "for an agent once the agent's key signs a challenge the merchant asked for "
        "(GET /api/agents/challenge with that key).",
    )
    def post(self, request):
        _rate_limit(request, "register", settings.AGENTS_REGISTER_RATE_LIMIT)
        if isinstance(request.auth, ApiKey) and request.auth.kind != ApiKey.Kind.ADMIN:
            raise Problem(403, "forbidden", "Registering an agent needs an admin key.")
        data = _valid(s.AgentRegistrationSerializer, request.data)
        proven = isinstance(request.auth, NostrKeyProof)
        if proven and request.auth.pubkey != data["pubkey"]:
            raise Problem(403, "forbidden", "The signed event is not from the key `pubkey`.")
        agent, created = services.register_agent(
            data["pubkey"], data["name"], data["description"], proven=proven
        )
        return Response(
            s.AgentSerializer(selectors.get_agent(agent.pubkey)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ChallengeView(APIView):
    authentication_classes = [ApiKeyAuthentication]

    @extend_schema(
        parameters=[s.AgentChallengeQuerySerializer],
        responses={
            200: s.AgentChallengeSerializer,
            **problems(
                403,
                404,
                429,
                d403="An invoice key, or the agent is inactive.",
                d404="No agent is registered with this pubkey.",
            ),
        },
        summary="A challenge for the agent to sign",
        description="32 random bytes (64 hex), bound to the pubkey, single use, short-lived. "
        "Asked for with a merchant's admin `X-Api-Key`, it is also bound to that merchant: "
        "the key's signature of it makes the merchant the agent's owner (the one that acts "
        "for it with its API key). Rate-limited per client address.",
    )
    def get(self, request):
        _rate_limit(request, "challenge", settings.AGENTS_CHALLENGE_RATE_LIMIT)
        merchant = None
        if isinstance(request.auth, ApiKey):
            if request.auth.kind != ApiKey.Kind.ADMIN:
                raise Problem(403, "forbidden", "Claiming an agent needs an admin key.")
            merchant = request.merchant
        data = _valid(s.AgentChallengeQuerySerializer, request.query_params)
        challenge = services.issue_challenge(data["pubkey"], merchant=merchant)
        return Response(
            {
                "challenge": challenge.challenge,
                "pubkey": challenge.pubkey,
                "expiresInSeconds": settings.AGENTS_CHALLENGE_TTL_SECONDS,
            }
        )


class VerifyView(APIView):
    @extend_schema(
        request=s.AgentVerificationSerializer,
        responses={
            200: s.AgentVerifiedSerializer,
            **problems(
                403,
                404,
                409,
                410,
                429,
                d403="wrong_key: the challenge was issued for another pubkey.",
                d404="unknown_challenge (not issued here), or the agent is gone.",
                d409="challenge_spent: the challenge was already used.",
                d410="challenge_expired: ask for a new one.",
            ),
        },
        summary="Prove key ownership with a BIP-340 signature of the challenge",
        description="The challenge is spent by any attempt. A challenge a merchant asked for "
        "makes that merchant the agent's owner; one asked for without a key leaves the owner "
        "as it is. Errors (`error`): malformed_hex, invalid_signature, wrong_key, "
        "unknown_challenge, challenge_spent, challenge_expired. "
        "Rate-limited per client address.",
    )
    def post(self, request):
        _rate_limit(request, "verify", settings.AGENTS_VERIFY_RATE_LIMIT)
        data = _valid(s.AgentVerificationSerializer, request.data)
        agent, claimed = services.verify_agent(data["pubkey"], data["challenge"], data["signature"])
        message = "The agent proved it holds its key."
        if claimed:
            message += " The merchant that asked for this challenge now acts for it."
        verified = {
            "pubkey": agent.pubkey,
            "isVerified": agent.is_verified,
            "verifiedAt": agent.verified_at,
            "message": message,
        }
        return Response(s.AgentVerifiedSerializer(verified).data)


class AgentListView(APIView):
    pagination_class = AgentsPagination

    @extend_schema(
        parameters=[s.AgentListQuerySerializer, *AgentsPagination.openapi_parameters()],
        responses=s.AgentListSerializer,
        operation_id="agents_list",
        summary="List agents (filter by verified, search by name)",
    )
    def get(self, request):
        data = _valid(s.AgentListQuerySerializer, request.query_params)
        agents = selectors.list_agents(data["verified"], data["q"])
        return self.pagination_class.respond(self, agents, s.AgentSerializer)


def _agent_or_404(pubkey: str):
    agent = selectors.get_agent(pubkey)
    if agent is None:
        raise Problem(404, "not_found", "No agent is registered with this pubkey.")
    return agent


class AgentDetailView(APIView):
    @extend_schema(
        responses=s.AgentSerializer, operation_id="agents_get", summary="An agent by its pubkey"
    )
    def get(self, request, pubkey):
        return Response(s.AgentSerializer(_agent_or_404(pubkey)).data)


class AgentStatsView(APIView):
    @extend_schema(responses=s.AgentStatsSerializer, summary="An agent's figures")
    def get(self, request, pubkey):
        agent = _agent_or_404(pubkey)
        requests = agent.total_requests
        revenue = agent.total_revenue_sats
        stats = {
            "pubkey": agent.pubkey,
            "name": agent.name,
            "totalRequests": requests,
            "totalRevenueSats": revenue,
            "activeAgreements": agent.active_agreements,
            "averageRevenuePerRequest": revenue / requests if requests else 0.0,
            "isActive": agent.is_active,
            "registeredAt": agent.created_at,
            "lastUpdated": selectors.last_activity(agent),
        }
        return Response(s.AgentStatsSerializer(stats).data)


class CapabilitiesView(APIView):
    authentication_classes = AGENT_AUTH
    pagination_class = ItemsPagination
    permission_classes = [AgentActorRequired]
    public_methods = ("GET", "HEAD", "OPTIONS")

    @extend_schema(
        parameters=[s.DiscoveryQuerySerializer],
        responses=s.CapabilitySerializer(many=True),
        summary="Discover capabilities (public)",
    )
    def get(self, request):
        data = _valid(s.DiscoveryQuerySerializer, request.query_params)
        capabilities = selectors.discover_capabilities(
            data["category"], data["q"], data["hashtags"]
        )
        return self.pagination_class.respond(self, capabilities, s.CapabilitySerializer)

    @extend_schema(
        request=s.PublishCapabilitySerializer,
        responses={
            201: s.CapabilityPublishedSerializer,
            **ACTING_PROBLEMS,
            **problems(409, d409="An item with this event id exists."),
        },
        summary="Publish (or replace) a capability",
        description=ACTING_DOC,
    )
    def post(self, request):
        data = _valid(s.PublishCapabilitySerializer, request.data)
        agent = acting_agent(request, data.get("pubkey"))
        capability = services.publish_capability(
            agent,
            service_id=data["serviceId"],
            content=data["content"],
            categories=data["categories"],
            hashtags=data["hashtags"],
            price_sats=data["priceSats"],
            l402_endpoint=data["l402Endpoint"],
            target_url=data["targetUrl"],
            event=data.get("event"),
        )
        return Response(
            {"eventId": capability.event_id, "l402Endpoint": capability.l402_endpoint or None},
            status=status.HTTP_201_CREATED,
        )


class CapabilityDetailView(APIView):
    authentication_classes = AGENT_AUTH
    permission_classes = [AgentActorRequired]

    @extend_schema(
        parameters=[s.ActingQuerySerializer],
        responses={204: None, **ACTING_PROBLEMS},
        summary="Take a capability down",
        description=ACTING_DOC,
    )
    def delete(self, request, service_id):
        data = _valid(s.ActingQuerySerializer, request.query_params)
        agent = acting_agent(request, data.get("pubkey"))
        services.take_down_capability(agent, service_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RequestsView(APIView):
    authentication_classes = AGENT_AUTH
    pagination_class = ItemsPagination
    permission_classes = [AgentActorRequired]

    @extend_schema(
        parameters=[s.ActingQuerySerializer],
        responses={200: s.ServiceRequestSerializer(many=True), **ACTING_PROBLEMS},
        summary="The acting provider's incoming requests",
        description=ACTING_DOC,
    )
    def get(self, request):
        data = _valid(s.ActingQuerySerializer, request.query_params)
        provider = acting_agent(request, data.get("pubkey"))
        requests = selectors.incoming_requests(provider)
        return self.pagination_class.respond(self, requests, s.ServiceRequestSerializer)

    @extend_schema(
        request=s.CreateRequestSerializer,
        responses={
            201: s.RequestCreatedSerializer,
            **ACTING_PROBLEMS,
            **problems(409, d409="An item with this event id exists."),
        },
        summary="Request work from a capability",
        description=ACTING_DOC,
    )
    def post(self, request):
        data = _valid(s.CreateRequestSerializer, request.data)
        requester = acting_agent(request, data.get("pubkey"))
        service_request = services.create_request(
            requester,
            capability_event_id=data["capabilityEventId"],
            budget_sats=data["budgetSats"],
            parameters=data["parameters"],
            event=data.get("event"),
        )
        return Response(
            {
                "requestEventId": service_request.event_id,
                "l402Endpoint": service_request.capability.l402_endpoint or None,
            },
            status=status.HTTP_201_CREATED,
        )


class AgreementsView(APIView):
    authentication_classes = AGENT_AUTH
    pagination_class = ItemsPagination
    permission_classes = [AgentActorRequired]

    @extend_schema(
        parameters=[s.AgreementQuerySerializer],
        responses={200: s.AgreementSerializer(many=True), **ACTING_PROBLEMS},
        summary="The acting agent's agreements (as provider or requester)",
        description=ACTING_DOC,
    )
    def get(self, request):
        data = _valid(s.AgreementQuerySerializer, request.query_params)
        agent = acting_agent(request, data.get("pubkey"))
        agreements = selectors.agreements_of(agent, data["status"])
        return self.pagination_class.respond(self, agreements, s.AgreementSerializer)

    @extend_schema(
        request=s.CreateAgreementSerializer,
        responses={
            201: s.AgreementSerializer,
            **ACTING_PROBLEMS,
            **problems(409, d409="The request has an agreement already, or the event id exists."),
        },
        summary="Accept an incoming request into an agreement",
        description=ACTING_DOC,
    )
    def post(self, request):
        data = _valid(s.CreateAgreementSerializer, request.data)
        provider = acting_agent(request, data.get("pubkey"))
        agreement = services.accept_request(
            provider,
            request_event_id=data["requestEventId"],
            price_sats=data["priceSats"],
            terms=data["terms"],
            event=data.get("event"),
        )
        return Response(s.AgreementSerializer(agreement).data, status=status.HTTP_201_CREATED)


class CloseAgreementView(APIView):
    authentication_classes = AGENT_AUTH
    permission_classes = [AgentActorRequired]
    outcome = Agreement.Status.COMPLETED

    @extend_schema(
        request=s.CloseAgreementSerializer,
        responses={
            200: s.AgreementSerializer,
            **ACTING_PROBLEMS,
            **problems(409, d409="The agreement is no longer active."),
        },
        description="Either party may close an active agreement. " + ACTING_DOC,
    )
    def post(self, request, agreement_id):
        data = _valid(s.CloseAgreementSerializer, request.data)
        agent = acting_agent(request, data.get("pubkey"))
        agreement = services.close_agreement(agent, agreement_id.lower(), self.outcome)
        return Response(s.AgreementSerializer(agreement).data)


class CompleteAgreementView(CloseAgreementView):
    outcome = Agreement.Status.COMPLETED


class CancelAgreementView(CloseAgreementView):
    outcome = Agreement.Status.CANCELLED


class AttestationsView(APIView):
    authentication_classes = AGENT_AUTH
    pagination_class = ItemsPagination
    permission_classes = [AgentActorRequired]
    public_methods = ("GET", "HEAD", "OPTIONS")

    @extend_schema(
        parameters=[s.AttestationQuerySerializer],
        responses=s.AttestationSerializer(many=True),
        summary="Attestations about an agent (public)",
    )
    def get(self, request):
        data = _valid(s.AttestationQuerySerializer, request.query_params)
        attestations = selectors.attestations_about(data["pubkey"])
        return self.pagination_class.respond(self, attestations, s.AttestationSerializer)

    @extend_schema(
        request=s.CreateAttestationSerializer,
        responses={
            201: s.AttestationCreatedSerializer,
            **ACTING_PROBLEMS,
            **problems(409, d409="This agreement was attested by this agent already."),
        },
        summary="Rate the other party to an agreement (once)",
        description=ACTING_DOC,
    )
    def post(self, request):
        data = _valid(s.CreateAttestationSerializer, request.data)
        reviewer = acting_agent(request, data.get("pubkey"))
        attestation = services.attest(
            reviewer,
            subject_pubkey=data["subjectPubkey"],
            agreement_id=data["agreementId"].lower(),
            rating=data["rating"],
            content=data["content"],
            proof=data["proof"] or "",
            attestation_id=data["attestationId"],
            event=data.get("event"),
        )
        return Response({"eventId": attestation.event_id}, status=status.HTTP_201_CREATED)
