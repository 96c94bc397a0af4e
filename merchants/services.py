"""The merchant's own account: who it is, what to do next, the wallet it connected, and the
Lightning provider it is paid through."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from agents.models import Agent, Capability
from checkout.models import ApiKey, Merchant, Product
from config.problems import Problem
from l402.models import PaidContent, Proxy
from shopify_bridge.models import ShopifyStore
from wallets import selectors as wallet_selectors
from webhooks.models import WebhookEndpoint

from . import nwc
from .models import NwcConnection

# What a saved NWC connection does today (README says the same).
NWC_USE = (
    "Stored encrypted for this merchant and shown here; payments do not go through it yet: "
    "the gateway receives and sends every payment through its own Lightning node."
)
PROVIDERS = {
    "lnd": "the operator's LND node, over gRPC",
    "devnode": "the embedded development node (no real money)",
}


def _url(path: str) -> str:
    return settings.PUBLIC_BASE_URL + path


# --- the account ---------------------------------------------------------------------------


def _counts(merchant: Merchant) -> dict:
    proxies = Proxy.objects.filter(merchant=merchant, retired_at__isnull=True)
    return {
        "products": Product.objects.filter(merchant=merchant, archived=False).count(),
        "proxies": proxies.count(),
        "active_proxies": proxies.filter(is_active=True).count(),
        "content": PaidContent.objects.filter(merchant=merchant).count(),
        "webhooks": WebhookEndpoint.objects.filter(merchant=merchant, enabled=True).count(),
        "agents": Agent.objects.filter(owner=merchant, is_verified=True, is_active=True).count(),
        "capabilities": Capability.objects.filter(
            agent__owner=merchant, deleted_at__isnull=True
        ).count(),
        "shopify": ShopifyStore.objects.filter(merchant=merchant).count(),
    }


def account(merchant: Merchant, key: ApiKey) -> dict:
    counts = _counts(merchant)
    steps = _steps(merchant, counts)
    wallet = wallet_selectors.wallet_of(merchant)
    has_nwc = NwcConnection.objects.filter(merchant=merchant).exists()
    return {
        "merchantId": merchant.public_id,
        "name": merchant.name,
        "email": merchant.email,
        "createdAt": merchant.created_at,
        "isActive": True,
        "planTier": "self-hosted",
        "subscriptionStatus": "active",
        "paymentProvider": settings.LIGHTNING_BACKEND,
        "apiKey": {"name": key.name, "kind": key.kind, "prefix": key.prefix},
        "balanceMsat": wallet.balance_msat if wallet else 0,
        "features": {
            "checkoutEnabled": True,
            "l402Enabled": True,
            "agentsEnabled": True,
            "shopifyEnabled": counts["shopify"] > 0,
            "walletEnabled": True,
        },
        "onboarding": {
            "hasNwcConnection": has_nwc,
            "hasStrikeKey": False,
            "hasOpenNodeKey": False,
            "hasLightningNode": settings.LIGHTNING_BACKEND != "devnode",
            "isFullyConfigured": all(s["isCompleted"] for s in steps if s["isRequired"]),
            "productCount": counts["products"],
            "proxyCount": counts["proxies"],
            "hasActiveProxy": counts["active_proxies"] > 0,
            "webhookEndpointCount": counts["webhooks"],
            "verifiedAgentCount": counts["agents"],
        },
    }


# --- what to do next -------------------------------------------------------------------------


def _steps(merchant: Merchant, counts: dict) -> list[dict]:
    backend = settings.LIGHTNING_BACKEND
    docs = _url("/docs")
    rows = [
        (
            "Connect a Lightning node",
            "Payments are made and received by the operator's node: set LIGHTNING_BACKEND=lnd "
            "with LND_GRPC_HOST, LND_TLS_CERT and LND_MACAROON (README: running "
            f"against a real LND). This gateway uses {PROVIDERS.get(backend, backend)}.",
            backend != "devnode",
            True,
            None,
        ),
        (
            "Create an API key",
            "You are using one. Admin keys change things; invoice keys create invoices and read.",
            True,
            True,
            ("GET", "/admin/checkout/apikey/"),
        ),
        (
            "Offer something for sale",
            "A product for the hosted checkout (POST /api/checkout/products), an L402 paid "
            "API proxy (POST /api/proxy) or paid content (POST /api/l402/content).",
            bool(counts["products"] or counts["proxies"] or counts["content"]),
            True,
            ("POST", "/api/checkout/products"),
        ),
        (
            "Add a webhook endpoint",
            "Your shop hears of each payment, signed (Standard Webhooks).",
            counts["webhooks"] > 0,
            False,
            ("POST", "/api/webhooks"),
        ),
        (
            "Verify an agent",
            "Register an agent's Nostr key and sign a challenge with it; you then act for it "
            "with this API key.",
            counts["agents"] > 0,
            False,
            ("POST", "/api/agents/register"),
        ),
        (
            "Publish a capability",
            "Let other agents find and pay for what your agent does.",
            counts["capabilities"] > 0,
            False,
            ("POST", "/api/agents/capabilities"),
        ),
    ]
    return [
        {
            "stepNumber": number,
            "title": title,
            "description": description,
            "isCompleted": done,
            "isRequired": required,
            "method": action[0] if action else None,
            "url": _url(action[1]) if action else None,
            "docsUrl": docs,
        }
        for number, (title, description, done, required, action) in enumerate(rows, start=1)
    ]


def quickstart(merchant: Merchant) -> dict:
    steps = _steps(merchant, _counts(merchant))
    required = [step for step in steps if step["isRequired"]]
    pending = [step for step in steps if not step["isCompleted"]]
    return {
        "completedSteps": sum(step["isCompleted"] for step in steps),
        "totalSteps": len(steps),
        "requiredStepsCompleted": sum(step["isCompleted"] for step in required),
        "requiredStepsTotal": len(required),
        "isReadyForProduction": all(step["isCompleted"] for step in required),
        "nextStep": pending[0]["stepNumber"] if pending else None,
        "baseUrl": settings.PUBLIC_BASE_URL,
        "steps": steps,
    }


# --- Nostr Wallet Connect ---------------------------------------------------------------------


def nwc_status(merchant: Merchant) -> dict:
    connection = NwcConnection.objects.filter(merchant=merchant).first()
    if connection is None:
        return {"connected": False, "usage": NWC_USE}
    return {
        "connected": True,
        "walletPubkey": connection.wallet_pubkey,
        "relays": connection.relays,
        "lud16": connection.lud16 or None,
        "connectedAt": connection.created_at,
        "updatedAt": connection.updated_at,
        "usage": NWC_USE,
    }


def save_nwc_connection(merchant: Merchant, uri: str) -> tuple[dict, bool]:
    """Check the NIP-47 URI and keep it (replacing an earlier one). Returns the status and
    whether it is the merchant's first connection."""
    try:
        parsed = nwc.parse(uri)
    except nwc.InvalidConnection as exc:
        raise Problem(
            400,
            "invalid_nwc_connection",
            f"nwcConnectionString: {exc}",
            {"nwcConnectionString": [f"Not a NIP-47 connection URI: {exc}."]},
        ) from None
    with transaction.atomic():
        _, created = NwcConnection.objects.update_or_create(
            merchant=merchant,
            defaults={
                "connection_string": uri.strip(),
                "wallet_pubkey": parsed.wallet_pubkey,
                "relays": list(parsed.relays),
                "lud16": parsed.lud16,
            },
        )
    return nwc_status(merchant), created


def remove_nwc_connection(merchant: Merchant) -> bool:
    deleted, _ = NwcConnection.objects.filter(merchant=merchant).delete()
    return bool(deleted)


# --- the payment provider ---------------------------------------------------------------------


def payment_provider(merchant: Merchant) -> dict:
    backend = settings.LIGHTNING_BACKEND
    return {
        "provider": backend,
        "description": PROVIDERS.get(backend, backend),
        "availableProviders": [backend],
        "changeable": False,
        "hasNwcConnection": NwcConnection.objects.filter(merchant=merchant).exists(),
        "message": "Every merchant is paid and pays through the gateway's node, which the "
        "operator chooses (LIGHTNING_BACKEND); a merchant cannot switch it.",
    }


def set_payment_provider(merchant: Merchant, provider: str) -> dict:
    """Only the provider in use can be "set": there is one per gateway, the operator's."""
    backend = settings.LIGHTNING_BACKEND
    if provider.strip().lower() != backend:
        raise Problem(
            409,
            "provider_fixed",
            f"this gateway is paid through {PROVIDERS.get(backend, backend)} for every "
            f"merchant; {provider!r} cannot be chosen. The operator picks the node "
            "(LIGHTNING_BACKEND); a saved NWC connection is stored, not used for payments.",
        )
    return payment_provider(merchant)
