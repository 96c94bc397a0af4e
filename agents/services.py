"""The registry's rules: registering and verifying agents, and what verified agents publish,
ask for, agree to and attest.

Every function raises `config.problems.Problem` for a rule the caller broke, and writes all
or nothing.
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from config.problems import Problem

from . import nostr
from .models import (
    Agent,
    Agreement,
    Attestation,
    Capability,
    CapabilityPayment,
    Challenge,
    ServiceRequest,
)

# Spent and expired challenges are kept this long, so a replay reads "spent", not "unknown".
CHALLENGE_RETENTION = timedelta(days=1)


def _problem(error: nostr.NostrError, status: int = 400) -> Problem:
    return Problem(status, error.error, error.detail)


# --- identity ------------------------------------------------------------------------------


def register_agent(pubkey: str, name: str, description: str, proven: bool) -> tuple[Agent, bool]:
    """Register an agent, or rewrite the name and description of one whose key has not
    proven itself yet. Returns the agent and whether it is new.

    An unproven registration belongs to nobody: anyone may rewrite it, so registering a key
    first cannot squat it. Once the key has proven itself, only the key changes the details
    (`proven`: the registration is signed with it, which also verifies the agent). No one
    acts for an agent by registering it: ownership follows a proof (`verify_agent`).
    """
    now = timezone.now()
    details = {"name": name, "description": description, "updated_at": now}
    if proven:
        details.update(is_verified=True, verified_at=now)
    try:
        with transaction.atomic():
            return Agent.objects.create(pubkey=pubkey, **details), True
    except IntegrityError:
        pass
    agent = Agent.objects.filter(pubkey=pubkey).first()
    if agent is not None and not agent.is_active:
        raise Problem(403, "agent_inactive", "This agent has been deactivated.")
    rewritable = Agent.objects.filter(pubkey=pubkey, is_active=True)
    if not proven:
        rewritable = rewritable.filter(is_verified=False)
    if not rewritable.update(**details):
        raise Problem(
            409,
            "agent_exists",
            "An agent with this pubkey is registered and has proven its key: only that key "
            "may change it (sign the registration with NIP-98).",
        )
    return Agent.objects.get(pubkey=pubkey), False


def issue_challenge(pubkey: str, merchant=None) -> Challenge:
    """32 random bytes for the agent to sign, bound to its pubkey, single use, short-lived.

    With `merchant` (who asked with its admin key), the signature makes that merchant the
    agent's owner: the key, not a registration, decides who acts for it."""
    agent = Agent.objects.filter(pubkey=pubkey).first()
    if agent is None:
        raise Problem(404, "not_found", "No agent is registered with this pubkey.")
    if not agent.is_active:
        raise Problem(403, "agent_inactive", "This agent has been deactivated.")
    now = timezone.now()
    Challenge.objects.filter(created_at__lt=now - CHALLENGE_RETENTION).delete()
    return Challenge.objects.create(
        challenge=secrets.token_hex(32),
        pubkey=pubkey,
        merchant=merchant,
        expires_at=now + timedelta(seconds=settings.AGENTS_CHALLENGE_TTL_SECONDS),
    )


def verify_agent(pubkey: str, challenge: str, signature: str) -> tuple[Agent, bool]:
    """Check a BIP-340 signature of the challenge's 32 bytes and mark the agent verified;
    a challenge a merchant asked for also makes that merchant the owner. Returns the agent
    and whether the proof bound a merchant.

    The challenge is spent first, by a conditional update whose row count decides, so of
    any number of attempts (even concurrent ones) exactly one gets to use it, whatever
    the outcome: a failed attempt cannot be retried against the same challenge.
    """
    try:
        message = nostr.parse_hex(challenge, 32, "challenge")
    except nostr.NostrError as error:
        raise _problem(error) from None
    challenge = challenge.lower()
    now = timezone.now()
    spent = Challenge.objects.filter(challenge=challenge, spent_at__isnull=True).update(
        spent_at=now
    )
    if not spent:
        if Challenge.objects.filter(challenge=challenge).exists():
            raise Problem(409, "challenge_spent", "This challenge was already used.")
        raise Problem(404, "unknown_challenge", "This challenge was not issued here.")
    issued = Challenge.objects.get(challenge=challenge)
    if issued.expires_at <= now:
        raise Problem(410, "challenge_expired", "This challenge has expired; ask for a new one.")
    try:
        nostr.parse_hex(pubkey, 32, "pubkey")
        if pubkey.lower() != issued.pubkey:
            raise Problem(403, "wrong_key", "This challenge was issued for another pubkey.")
        valid = nostr.schnorr_valid(issued.pubkey, signature, message)
    except nostr.NostrError as error:
        raise _problem(error) from None
    if not valid:
        raise Problem(
            400, "invalid_signature", "The signature is not this key's signature of the challenge."
        )
    proof = {"is_verified": True, "verified_at": now, "updated_at": now}
    if issued.merchant_id is not None:
        proof["owner_id"] = issued.merchant_id
    updated = Agent.objects.filter(pubkey=issued.pubkey).update(**proof)
    if not updated:
        raise Problem(404, "not_found", "No agent is registered with this pubkey.")
    return Agent.objects.get(pubkey=issued.pubkey), issued.merchant_id is not None


def set_agent_active(agent: Agent, active: bool) -> None:
    """The operator's switch: an inactive agent is hidden from discovery and cannot write."""
    Agent.objects.filter(pk=agent.pk).update(is_active=active, updated_at=timezone.now())


# --- items ---------------------------------------------------------------------------------


def _item_event_id(agent: Agent, event: dict | None, item: dict) -> str:
    """The id of the signed event the agent sent for the item, or one derived from the item."""
    if event is None:
        return nostr.canonical_id(item)
    try:
        nostr.verify_event(event)
    except nostr.NostrError as error:
        raise _problem(error) from None
    if event["pubkey"] != agent.pubkey:
        raise Problem(400, "event_pubkey_mismatch", "The event is not signed by the acting agent.")
    return event["id"]


def _duplicate_event() -> Problem:
    return Problem(409, "duplicate_event", "An item with this event id already exists.")


def publish_capability(
    agent: Agent,
    *,
    service_id: str,
    content: str,
    categories: list[str],
    hashtags: list[str],
    price_sats: int,
    l402_endpoint: str,
    target_url: str,
    event: dict | None = None,
) -> Capability:
    """Publish what the agent offers; the same `service_id` again replaces it (like a
    replaceable Nostr event), and brings it back if it was taken down."""
    fields = {
        "content": content,
        "categories": categories,
        "hashtags": hashtags,
        "price_sats": price_sats,
        "l402_endpoint": l402_endpoint,
        "target_url": target_url,
    }
    item = {"type": "capability", "pubkey": agent.pubkey, "serviceId": service_id, **fields}
    fields["event_id"] = _item_event_id(agent, event, item)
    fields["deleted_at"] = None
    try:
        with transaction.atomic():
            capability, _ = Capability.objects.update_or_create(
                agent=agent, service_id=service_id, defaults=fields
            )
    except IntegrityError:
        # Either the event id is taken by another item, or a concurrent first publish of
        # this service won the insert: then replacing it is the right answer.
        if (
            Capability.objects.filter(event_id=fields["event_id"])
            .exclude(agent=agent, service_id=service_id)
            .exists()
        ):
            raise _duplicate_event() from None
        with transaction.atomic():
            capability, _ = Capability.objects.update_or_create(
                agent=agent, service_id=service_id, defaults=fields
            )
    return capability


def take_down_capability(agent: Agent, service_id: str) -> None:
    taken = Capability.objects.filter(
        agent=agent, service_id=service_id, deleted_at__isnull=True
    ).update(deleted_at=timezone.now())
    if not taken:
        raise Problem(404, "not_found", "This agent publishes no capability with this serviceId.")


def create_request(
    requester: Agent,
    *,
    capability_event_id: str,
    budget_sats: int,
    parameters: dict,
    event: dict | None = None,
) -> ServiceRequest:
    """Ask a provider's capability for work; the provider sees it among its requests."""
    capability = (
        Capability.objects.select_related("agent")
        .filter(event_id=capability_event_id, deleted_at__isnull=True, agent__is_active=True)
        .first()
    )
    if capability is None:
        raise Problem(404, "not_found", "No published capability has this event id.")
    if capability.agent_id == requester.pk:
        raise Problem(400, "own_capability", "An agent cannot request its own capability.")
    created_at = timezone.now()
    item = {
        "type": "request",
        "pubkey": requester.pubkey,
        "capabilityEventId": capability_event_id,
        "budgetSats": budget_sats,
        "parameters": parameters,
        "createdAt": created_at.isoformat(),
    }
    try:
        with transaction.atomic():
            return ServiceRequest.objects.create(
                event_id=_item_event_id(requester, event, item),
                capability=capability,
                capability_event_id=capability_event_id,
                provider=capability.agent,
                requester=requester,
                budget_sats=budget_sats,
                parameters=parameters,
                created_at=created_at,
            )
    except IntegrityError:
        raise _duplicate_event() from None


def accept_request(
    provider: Agent,
    *,
    request_event_id: str,
    price_sats: int,
    terms: str,
    event: dict | None = None,
) -> Agreement:
    """The provider accepts one of its incoming requests into an active agreement."""
    service_request = ServiceRequest.objects.filter(
        event_id=request_event_id, provider=provider
    ).first()
    if service_request is None:
        raise Problem(404, "not_found", "This agent has no incoming request with this event id.")
    item = {
        "type": "agreement",
        "pubkey": provider.pubkey,
        "requestEventId": request_event_id,
        "priceSats": price_sats,
        "terms": terms,
    }
    event_id = _item_event_id(provider, event, item)
    try:
        with transaction.atomic():
            return Agreement.objects.create(
                event_id=event_id,
                request=service_request,
                provider=provider,
                requester_id=service_request.requester_id,
                price_sats=price_sats,
                terms=terms,
            )
    except IntegrityError:
        if Agreement.objects.filter(request=service_request).exists():
            raise Problem(
                409, "request_already_accepted", "This request already has an agreement."
            ) from None
        raise _duplicate_event() from None


def close_agreement(agent: Agent, agreement_id: str, status: str) -> Agreement:
    """Complete or cancel an active agreement; either party may. Only the first close counts."""
    agreement = (
        Agreement.objects.filter(event_id=agreement_id)
        .filter(Q(provider=agent) | Q(requester=agent))
        .first()
    )
    if agreement is None:
        raise Problem(404, "not_found", "This agent is party to no agreement with this id.")
    now = timezone.now()
    stamp = "completed_at" if status == Agreement.Status.COMPLETED else "cancelled_at"
    closed = Agreement.objects.filter(pk=agreement.pk, status=Agreement.Status.ACTIVE).update(
        status=status, closed_by=agent, **{stamp: now}
    )
    if not closed:
        raise Problem(409, "agreement_not_active", f"This agreement is already {agreement.status}.")
    agreement.refresh_from_db()
    return agreement


def attest(
    reviewer: Agent,
    *,
    subject_pubkey: str,
    agreement_id: str,
    rating: int,
    content: str,
    proof: str,
    attestation_id: str,
    event: dict | None = None,
) -> Attestation:
    """A party to an agreement rates the other party, once."""
    agreement = (
        Agreement.objects.select_related("provider", "requester")
        .filter(event_id=agreement_id)
        .first()
    )
    if agreement is None:
        raise Problem(404, "not_found", "No agreement has this id.")
    parties = {
        agreement.provider.pubkey: agreement.requester,
        agreement.requester.pubkey: agreement.provider,
    }
    subject = parties.get(reviewer.pubkey)
    if subject is None:
        raise Problem(403, "not_a_party", "Only a party to the agreement may attest to it.")
    if subject_pubkey != subject.pubkey:
        raise Problem(
            400, "wrong_subject", "subjectPubkey must be the other party to the agreement."
        )
    item = {
        "type": "attestation",
        "pubkey": reviewer.pubkey,
        "subjectPubkey": subject.pubkey,
        "agreementId": agreement_id,
        "rating": rating,
        "content": content,
        "proof": proof,
        "attestationId": attestation_id,
    }
    event_id = _item_event_id(reviewer, event, item)
    try:
        with transaction.atomic():
            return Attestation.objects.create(
                event_id=event_id,
                agreement=agreement,
                reviewer=reviewer,
                subject=subject,
                rating=rating,
                content=content,
                proof=proof,
                attestation_id=attestation_id,
            )
    except IntegrityError:
        if Attestation.objects.filter(agreement=agreement, reviewer=reviewer).exists():
            raise Problem(
                409, "already_attested", "This party has already attested to this agreement."
            ) from None
        raise _duplicate_event() from None


def record_l402_payment(path: str, amount_sats: int, payment_hash: str, seller_id: int):
    """Count an L402 payment for a route on this gateway (e.g. `/l402/proxy/{proxyId}/...`)
    that the merchant with pk `seller_id` sells, against the live capability whose
    l402Endpoint covers it (full URL under PUBLIC_BASE_URL or the bare path), if any, of an
    agent that merchant owns. Anyone may name the route in a capability; only the seller's
    agents earn from it."""
    prefixes = [path, settings.PUBLIC_BASE_URL + path]
    covering = Q()
    for prefix in prefixes:
        covering |= Q(l402_endpoint=prefix) | Q(l402_endpoint__startswith=prefix + "/")
    capability = (
        Capability.objects.filter(
            covering, deleted_at__isnull=True, agent__is_active=True, agent__owner_id=seller_id
        )
        .order_by("-pk")
        .first()
    )
    if capability is None:
        return None
    return record_capability_payment(capability, amount_sats, payment_hash)


def record_capability_payment(
    capability: Capability, amount_sats: int, payment_hash: str
) -> CapabilityPayment:
    """Count a paid call that reached `capability` (an L402 payment to its endpoint on this
    gateway) in its provider's stats. Idempotent per payment hash: call it from the
    payment's settlement, however many times that is delivered."""
    payment, _ = CapabilityPayment.objects.get_or_create(
        payment_hash=payment_hash,
        defaults={"capability": capability, "amount_sats": amount_sats},
    )
    return payment
