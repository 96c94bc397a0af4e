"""Reads: agents with their figures computed from the records (requests, agreements, paid
calls), never from counters kept alongside them."""

from django.db.models import Count, F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from .models import Agent, Agreement, Attestation, Capability, CapabilityPayment, ServiceRequest


def _per_agent(queryset, agent_field: str, aggregate) -> Coalesce:
    """One aggregate of `queryset` rows whose `agent_field` is the outer agent, 0 if none."""
    rows = (
        queryset.filter(**{agent_field: OuterRef("pk")})
        .order_by()
        .values(agent_field)
        .annotate(value=aggregate)
        .values("value")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def agents_with_stats() -> QuerySet[Agent]:
    """Agents annotated with `total_requests`, `total_revenue_sats`, `active_agreements`.

    Requests: those sent to the agent's capabilities, plus paid calls to them. Revenue: the
    price of completed agreements in which it is the provider, plus those paid calls.
    """
    active = Agreement.objects.filter(status=Agreement.Status.ACTIVE)
    completed = Agreement.objects.filter(status=Agreement.Status.COMPLETED)
    payments = CapabilityPayment.objects.all()
    return Agent.objects.annotate(
        request_count=_per_agent(ServiceRequest.objects.all(), "provider", Count("pk")),
        paid_call_count=_per_agent(payments, "capability__agent", Count("pk")),
        agreement_revenue=_per_agent(completed, "provider", Sum("price_sats")),
        paid_call_revenue=_per_agent(payments, "capability__agent", Sum("amount_sats")),
        # An agent is never both parties (it cannot request its own capability).
        providing=_per_agent(active, "provider", Count("pk")),
        commissioning=_per_agent(active, "requester", Count("pk")),
    ).annotate(
        total_requests=F("request_count") + F("paid_call_count"),
        total_revenue_sats=F("agreement_revenue") + F("paid_call_revenue"),
        active_agreements=F("providing") + F("commissioning"),
    )


def list_agents(verified: bool | None, q: str) -> QuerySet[Agent]:
    agents = agents_with_stats().order_by("-created_at", "-pk")
    if verified is not None:
        agents = agents.filter(is_verified=verified)
    if q:
        agents = agents.filter(name__icontains=q)
    return agents


def get_agent(pubkey: str) -> Agent | None:
    return agents_with_stats().filter(pubkey=pubkey.lower()).first()


def last_activity(agent: Agent):
    """When anything about the agent last changed: itself, or a record that reached it."""
    party = Q(provider=agent) | Q(requester=agent)
    moments = [
        agent.updated_at,
        ServiceRequest.objects.filter(party).aggregate(at=Max("created_at"))["at"],
        Capability.objects.filter(agent=agent).aggregate(at=Max("updated_at"))["at"],
        CapabilityPayment.objects.filter(capability__agent=agent).aggregate(at=Max("created_at"))[
            "at"
        ],
        Attestation.objects.filter(subject=agent).aggregate(at=Max("created_at"))["at"],
    ]
    for field in ("created_at", "completed_at", "cancelled_at"):
        moments.append(Agreement.objects.filter(party).aggregate(at=Max(field))["at"])
    return max(m for m in moments if m is not None)


def discover_capabilities(category: str, q: str, hashtags: list[str]) -> QuerySet[Capability]:
    """Published capabilities of active agents, newest version first."""
    capabilities = (
        Capability.objects.select_related("agent")
        .filter(deleted_at__isnull=True, agent__is_active=True)
        .order_by("-updated_at", "-pk")
    )
    if category:
        capabilities = capabilities.filter(categories_index__contains=f"|{category.lower()}|")
    for tag in hashtags:
        capabilities = capabilities.filter(hashtags_index__contains=f"|{tag.lower()}|")
    if q:
        capabilities = capabilities.filter(
            Q(content__icontains=q) | Q(service_id__icontains=q) | Q(agent__name__icontains=q)
        )
    return capabilities


def incoming_requests(provider: Agent) -> QuerySet[ServiceRequest]:
    return (
        ServiceRequest.objects.select_related("requester", "provider", "agreement")
        .filter(provider=provider)
        .order_by("-created_at", "-pk")
    )


def agreements_of(agent: Agent, status: str) -> QuerySet[Agreement]:
    agreements = (
        Agreement.objects.select_related("provider", "requester", "request")
        .filter(Q(provider=agent) | Q(requester=agent))
        .order_by("-created_at", "-pk")
    )
    if status:
        agreements = agreements.filter(status=status)
    return agreements


def attestations_about(pubkey: str) -> QuerySet[Attestation]:
    return (
        Attestation.objects.select_related("reviewer", "agreement")
        .filter(subject__pubkey=pubkey.lower())
        .order_by("-created_at", "-pk")
    )
