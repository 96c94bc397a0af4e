"""L402 offers and what they sell: challenges (an invoice plus the token it unlocks),
paywalled content, reverse proxies with their priced endpoints, and one-time request keys.

Tokens themselves are not stored: their root keys derive from a server secret, so a
reusable token is checked from the request alone. A challenge row records the offer for
listings, stats and the `l402.paid` event, and the token's id and caveats, from which the
server secret makes the token again when it must be shown again: a database read (the
paid invoice's preimage included) yields no working credential.
"""

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from checkout.models import public_id
from config.money import MAX_SATS

from . import macaroons, paths


def _challenge_id():
    return public_id("l402")


class StoredToken(models.Model):
    """A model that shows an L402 token again (a challenge, a Shopify order) keeps only
    its id and caveats (l402.macaroons.stored_parts) next to its `invoice`: `macaroon` is
    made again from them with the server secret, so the row (and the paid invoice's
    preimage beside it) is no working credential. Setting `macaroon` keeps those parts."""

    token_id = models.CharField(max_length=64)
    caveats = models.JSONField(default=list)

    class Meta:
        abstract = True

    _macaroon: str | None = None

    @property
    def macaroon(self) -> str:
        """The token (standard base64), byte for byte as it was minted."""
        if self._macaroon is None:
            self._macaroon = macaroons.assemble(
                self.invoice.payment_hash, self.token_id, self.caveats
            )
        return self._macaroon

    @macaroon.setter
    def macaroon(self, value: str) -> None:
        self.token_id, self.caveats = macaroons.stored_parts(value)
        self._macaroon = value


class L402Challenge(StoredToken):
    class Kind(models.TextChoices):
        RESOURCE = "resource"  # a merchant's resource via POST /api/l402/challenges
        DEMO = "demo"  # the gateway's own demo resources
        CONTENT = "content"
        BUNDLE = "bundle"
        PROXY = "proxy"

    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        EXPIRED = "expired"

    public_id = models.CharField(max_length=40, unique=True, default=_challenge_id, editable=False)
    merchant = models.ForeignKey(
        "checkout.Merchant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="l402_challenges",
        help_text="Empty for the gateway's own demo resources.",
    )
    invoice = models.OneToOneField(
        "lightning.Invoice", on_delete=models.PROTECT, related_name="l402_challenge"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    resource = models.CharField(max_length=500)
    proxy = models.ForeignKey(
        "l402.Proxy", null=True, blank=True, on_delete=models.SET_NULL, related_name="challenges"
    )
    price_sats = models.BigIntegerField()
    description = models.CharField(max_length=640, blank=True)
    idempotency_key = models.CharField(max_length=256, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "-created_at"]),
            models.Index(fields=["merchant", "idempotency_key", "-created_at"]),
        ]

    def __str__(self):
        return f"{self.resource} ({self.price_sats} sats)"

    @property
    def status(self) -> str:
        state = self.invoice.state
        if state == "paid":
            return self.Status.PAID
        if state == "open" and self.invoice.expires_at > timezone.now():
            return self.Status.PENDING
        return self.Status.EXPIRED


class PaidContent(models.Model):
    """A paywalled item a merchant publishes: the teaser is public, the body costs sats."""

    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="l402_content"
    )
    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    teaser = models.TextField(blank=True)
    body = models.TextField()
    price_sats = models.PositiveBigIntegerField(validators=[MaxValueValidator(MAX_SATS)])
    is_published = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "paid content"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price_sats__gte=1), name="content_price_min")
        ]

    def __str__(self):
        return self.title


def valid_path_pattern(value):
    """The bounds of l402.paths for a pattern saved outside the API (the admin)."""
    try:
        paths.clean_pattern(value)
    except paths.InvalidPath as exc:
        raise ValidationError(str(exc)) from None


def valid_path_patterns(value):
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Must be a list of path patterns.")
    try:
        paths.clean_patterns(value)
    except paths.InvalidPath as exc:
        raise ValidationError(str(exc)) from None


def _proxy_suffix():
    return secrets.token_hex(3)


class Proxy(models.Model):
    """A paid reverse proxy in front of a merchant's HTTP API."""

    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="l402_proxies"
    )
    proxy_id = models.SlugField(max_length=80, unique=True, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    target_base_url = models.URLField(max_length=2000)
    default_price_sats = models.PositiveBigIntegerField(validators=[MaxValueValidator(MAX_SATS)])
    is_active = models.BooleanField(default=True)
    auth_header = models.CharField(max_length=100, blank=True)
    # Encrypted (l402.secrets): the gateway must send it upstream, so it cannot be hashed.
    auth_value_encrypted = models.TextField(blank=True)
    timeout_seconds = models.PositiveIntegerField(default=30)
    allowed_methods = models.JSONField(default=list, blank=True)  # empty: all
    # Patterns (l402.paths); empty allowed_paths: all.
    allowed_paths = models.JSONField(default=list, blank=True, validators=[valid_path_patterns])
    blocked_paths = models.JSONField(default=list, blank=True, validators=[valid_path_patterns])
    manifest_enabled = models.BooleanField(default=True)
    manifest_publicly_listed = models.BooleanField(default=False)
    service_description = models.TextField(blank=True)
    documentation_url = models.URLField(max_length=2000, blank=True)
    categories = models.JSONField(default=list, blank=True)
    # A GraphQL pay-per-request API (Blocktap's flow): POST api/invoice below the proxy
    # sells a one-time key for POST /graphql with the same body.
    graphql = models.BooleanField(default=False)
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "proxies"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(default_price_sats__gte=1), name="proxy_price_min"
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.proxy_id})"


class ProxyEndpoint(models.Model):
    """One priced route of a proxy; `path` is a pattern (l402.paths)."""

    class Method(models.TextChoices):
        GET = "GET"
        POST = "POST"
        PUT = "PUT"
        PATCH = "PATCH"
        DELETE = "DELETE"
        HEAD = "HEAD"
        OPTIONS = "OPTIONS"

    proxy = models.ForeignKey(Proxy, on_delete=models.CASCADE, related_name="endpoints")
    endpoint_id = models.SlugField(max_length=100)
    path = models.CharField(max_length=500, validators=[valid_path_pattern])
    http_method = models.CharField(max_length=7, choices=Method.choices)
    summary = models.CharField(max_length=500, blank=True)
    base_price_sats = models.PositiveBigIntegerField(validators=[MaxValueValidator(MAX_SATS)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["path", "http_method"]
        constraints = [
            models.UniqueConstraint(fields=["proxy", "endpoint_id"], name="proxy_endpoint_id"),
            models.UniqueConstraint(
                fields=["proxy", "http_method", "path"], name="proxy_endpoint_route"
            ),
            models.CheckConstraint(
                condition=models.Q(base_price_sats__gte=1), name="endpoint_price_min"
            ),
        ]

    def __str__(self):
        return f"{self.http_method} {self.path}"


class OneTimeKey(models.Model):
    """A key that pays for exactly one request (method, path, body) through a proxy.
    Stored as its SHA-256; spent by a conditional UPDATE, so only one use ever wins.

    A key outlives its proxy: what was sold (merchant, proxy id, request, price, invoice)
    stays on the merchant's books when the proxy is deleted, and the key then answers 410."""

    merchant = models.ForeignKey(
        "checkout.Merchant", on_delete=models.CASCADE, related_name="l402_one_time_keys"
    )
    proxy = models.ForeignKey(
        Proxy, null=True, on_delete=models.SET_NULL, related_name="one_time_keys"
    )
    proxy_public_id = models.CharField(max_length=80, db_index=True)  # Proxy.proxy_id
    key_hash = models.CharField(max_length=64, unique=True)
    invoice = models.OneToOneField(
        "lightning.Invoice", on_delete=models.PROTECT, related_name="l402_one_time_key"
    )
    method = models.CharField(max_length=7)
    path = models.CharField(max_length=2000)
    body_sha256 = models.CharField(max_length=64)
    price_sats = models.BigIntegerField()
    # Room for MAX_SATS at checkout.rates.MAX_RATE (10^15 USD/BTC): 23 digits + 8 places.
    price_usd = models.DecimalField(max_digits=31, decimal_places=8, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    spent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.method} {self.path} ({'spent' if self.spent_at else 'unspent'})"
