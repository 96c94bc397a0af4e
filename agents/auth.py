"""Who acts as an agent: the agent itself (NIP-98 HTTP auth) or the merchant its key chose as
owner (`X-Api-Key`).

NIP-98: `Authorization: Nostr <base64 of a signed kind-27235 event>` whose `u` tag is the
absolute request URL, `method` tag the HTTP method, `created_at` within the window, and, when
present, `payload` tag the sha256 hex of the body. Each event is accepted once.
"""

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from checkout.models import ApiKey
from config import parsers
from config.problems import Problem

from . import nostr
from .models import Agent, SeenAuthEvent

HTTP_AUTH_KIND = 27235


@dataclass(frozen=True)
class NostrAuth:
    """`request.auth` after NIP-98 authentication."""

    agent: Agent
    event: dict


def _unauthorized(error: str, detail: str) -> Problem:
    problem = Problem(401, error, detail)
    problem.auth_header = "Nostr"  # DRF's handler turns it into WWW-Authenticate
    return problem


def _request_urls(request) -> set[str]:
    """The URLs a client may have signed: as this server sees the request, and as the public
    base URL (behind a reverse proxy the two differ)."""
    path = request.get_full_path()
    urls = {settings.PUBLIC_BASE_URL + path}
    try:
        urls.add(request.build_absolute_uri(path))
    except DisallowedHost:
        pass
    return urls


def _decode_event(token: str) -> dict:
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise _unauthorized("nip98_malformed", "The Nostr token is not base64.") from None
    try:
        event = parsers.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise _unauthorized("nip98_malformed", "The Nostr token is not a JSON event.") from None
    return event


def _remember_event(event_id: str) -> None:
    """Record the event as used; a second use within the window is a replay."""
    window = settings.AGENTS_NIP98_WINDOW_SECONDS
    SeenAuthEvent.objects.filter(
        created_at__lt=timezone.now() - timedelta(seconds=2 * window + 60)
    ).delete()
    try:
        with transaction.atomic():
            SeenAuthEvent.objects.create(event_id=event_id)
    except IntegrityError:
        raise _unauthorized(
            "nip98_replayed", "This authorization event was already used."
        ) from None


def _signed_event(request) -> dict | None:
    """The request's NIP-98 event once every check of it holds (not yet remembered as used),
    or None when the request carries none."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "nostr":
        return None
    event = _decode_event(token.strip())
    try:
        nostr.verify_event(event)
    except nostr.NostrError as error:
        raise _unauthorized(f"nip98_{error.error}", error.detail) from None
    if event["kind"] != HTTP_AUTH_KIND:
        raise _unauthorized("nip98_wrong_kind", f"The event must be kind {HTTP_AUTH_KIND}.")
    window = settings.AGENTS_NIP98_WINDOW_SECONDS
    if abs(time.time() - event["created_at"]) > window:
        raise _unauthorized(
            "nip98_stale", f"The event's created_at must be within {window} seconds of now."
        )
    if nostr.tag_value(event, "u") not in _request_urls(request):
        raise _unauthorized("nip98_wrong_url", "The event's `u` tag is not this request's URL.")
    if (nostr.tag_value(event, "method") or "").upper() != request.method:
        raise _unauthorized("nip98_wrong_method", "The event's `method` tag is not this method.")
    payload = nostr.tag_value(event, "payload")
    if payload is not None and payload.lower() != hashlib.sha256(request.body).hexdigest():
        raise _unauthorized(
            "nip98_payload_mismatch", "The event's `payload` tag is not the body's sha256."
        )
    return event


class NostrAuthentication(BaseAuthentication):
    def authenticate(self, request):
        event = _signed_event(request)
        if event is None:
            return None
        agent = Agent.objects.filter(pubkey=event["pubkey"]).first()
        if agent is None:
            raise _unauthorized("agent_unknown", "No agent is registered with this pubkey.")
        _remember_event(event["id"])
        return (None, NostrAuth(agent, event))

    def authenticate_header(self, request):
        return "Nostr"


@dataclass(frozen=True)
class NostrKeyProof:
    """`request.auth` of a request signed (NIP-98, body included) by a key that need not be
    registered yet: the key's own registration."""

    pubkey: str
    event: dict


class NostrKeyAuthentication(BaseAuthentication):
    """NIP-98 by any key, for registering it. The `payload` tag is required: the name and
    description become the key's own word only if it signed them."""

    def authenticate(self, request):
        event = _signed_event(request)
        if event is None:
            return None
        if nostr.tag_value(event, "payload") is None:
            raise _unauthorized(
                "nip98_payload_required",
                "A signed registration needs a `payload` tag: the sha256 hex of the body.",
            )
        _remember_event(event["id"])
        return (None, NostrKeyProof(event["pubkey"], event))

    def authenticate_header(self, request):
        return "Nostr"


def _not_acting() -> Problem:
    return _unauthorized(
        "unauthorized",
        "Sign the request with NIP-98 (Authorization: Nostr ...) or send an X-Api-Key.",
    )


class AgentActorRequired(BasePermission):
    """Someone must act as an agent, except for the view's `public_methods`. Which agent,
    and whether it may act, is `acting_agent`'s question, once the body is parsed."""

    def allows_anonymous(self, view, method) -> bool:
        """For the OpenAPI document (config.schema): the public methods need no key."""
        return method in getattr(view, "public_methods", ())

    def has_permission(self, request, view):
        if request.method in getattr(view, "public_methods", ()):
            return True
        if not isinstance(request.auth, (NostrAuth, ApiKey)):
            raise _not_acting()
        return True


def _only_agent(merchant) -> Agent:
    """The agent a merchant acts for when it names none: its one verified, active agent.

    None is made for it: an agent's identity is a key its holder proves by signing, and a
    key the gateway made and kept would prove nothing. So a merchant with no agent, or
    with several, is told what to do."""
    agents = list(
        Agent.objects.filter(owner=merchant, is_active=True, is_verified=True).order_by("pk")[:21]
    )
    if len(agents) == 1:
        return agents[0]
    if not agents:
        raise Problem(
            400,
            "no_agent",
            "This merchant acts for no verified agent yet. Register one (POST "
            "/api/agents/register with its pubkey), ask for a challenge (GET "
            "/api/agents/challenge?pubkey=...) with this API key, and send the agent's "
            "signature of it to POST /api/agents/verify; then its requests need no pubkey.",
            {"pubkey": ["This merchant has no verified agent to act for."]},
        )
    listed = ", ".join(
        f"{agent.pubkey} ({agent.name})" if agent.name else agent.pubkey for agent in agents[:20]
    )
    raise Problem(
        400,
        "validation_error",
        f"pubkey: this merchant acts for several agents; name one of them: {listed}",
        {"pubkey": ["Required: this merchant acts for several agents."]},
        extra={"agents": [agent.pubkey for agent in agents[:20]]},
    )


def acting_agent(request, pubkey: str | None) -> Agent:
    """The agent this request acts as: the NIP-98 signer, or the merchant's agent `pubkey`
    (left out: its only verified agent).

    Only verified, active agents act. A merchant acts for the agents it owns, which their
    keys chose by signing its challenge (any other agent is a 404); writes on their behalf
    need the merchant's admin key.
    """
    auth = request.auth
    if isinstance(auth, NostrAuth):
        agent = auth.agent
        if pubkey and pubkey.lower() != agent.pubkey:
            raise Problem(403, "forbidden", "The signed event is not from the agent `pubkey`.")
    elif isinstance(auth, ApiKey):
        if not pubkey:
            agent = _only_agent(request.merchant)
        else:
            agent = Agent.objects.filter(pubkey=pubkey.lower(), owner=request.merchant).first()
        if agent is None:
            raise Problem(
                404,
                "not_found",
                "This merchant does not act for an agent with this pubkey (its key makes a "
                "merchant its owner by signing a challenge the merchant asked for).",
            )
        if request.method not in ("GET", "HEAD", "OPTIONS") and auth.kind != ApiKey.Kind.ADMIN:
            raise Problem(403, "forbidden", "Acting for an agent needs an admin key.")
    else:
        raise _not_acting()
    if not agent.is_active:
        raise Problem(403, "agent_inactive", "This agent has been deactivated.")
    if not agent.is_verified:
        raise Problem(
            403, "agent_unverified", "This agent has not proven it holds its key (verify first)."
        )
    return agent
