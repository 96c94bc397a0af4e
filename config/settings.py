"""Zapgate settings, read from the environment (see README and .env.example)."""

import os
import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# The data folder holds the keys and every record, so only this user may read it: a umask
# set before anything is written makes new files 0600 and folders 0700 (SQLite gives its
# -wal and -shm files the database's mode), and what an earlier run left is tightened here.
os.umask(0o077)
DATA_DIR = Path(env.str("ZAPGATE_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _make_private(folder: Path) -> None:
    for entry in (folder, *folder.iterdir()):
        try:
            if not entry.is_symlink():
                entry.chmod(0o700 if entry.is_dir() else 0o600)
        except (FileNotFoundError, PermissionError):
            pass  # gone meanwhile, or another user's: nothing we can change


_make_private(DATA_DIR)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once into the data folder."""
    if env.str("SECRET_KEY", default=""):
        return env.str("SECRET_KEY")
    path = DATA_DIR / "secret_key"
    if not path.exists():
        tmp = path.with_suffix(f".{secrets.token_hex(4)}")
        tmp.write_text(secrets.token_urlsafe(50))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic: the first process to get here wins
        except FileExistsError:
            pass
        tmp.unlink()
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
# Dev mode turns on the dev-only helpers (the dev wallet API, the pay button).
DEV_MODE = env.bool("ZAPGATE_DEV_MODE", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "lightning",
    "checkout",
    "agents",
    "shopify_bridge",
    "webhooks",
    "l402",
    "wallets",
    "refunds",
    "orders",
    "merchants",
    "dashboard",
    "notifications",
    "realtime",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ProblemInstance",
    "config.middleware.RequestSizeLimit",
    "config.middleware.RefuseNul",
    "config.middleware.MethodNotAllowed",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.security.ContentSecurityPolicy",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'zapgate.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE transactions take
    # the write lock up front, so two writers wait for each other instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-zapgate.sqlite3")}
# Each thread keeps its connection between requests: opening one cost a TCP and auth round
# trip on PostgreSQL, and on SQLite a file open plus the PRAGMAs above (about 1.7 ms, a
# third of an invoice creation). Django's connections are per thread, and the threads of
# gunicorn gthread, the Celery pool and the webhook senders are long-lived, so this keeps
# one connection per thread, closed once older than DB_CONN_MAX_AGE.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with the health check skipped for a connection in use (see there).
    DATABASES["default"]["ENGINE"] = "config.db.postgresql"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Logins and transport security ----------------------------------------------------
# django-axes: after LOGIN_FAILURE_LIMIT wrong passwords for one user name from one address
# (CLIENT_IP_HEADER decides the address, as for rate limits), that pair is locked out for
# LOGIN_LOCKOUT_MINUTES; a successful login clears its count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "config.ratelimit.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Behind https (PUBLIC_BASE_URL), cookies are sent only over https and browsers are told to
# use nothing else (HSTS). Django knows a request came over https only from the connection,
# or from SECURE_PROXY_SSL_HEADER when a TLS-terminating proxy sets it (and strips it from
# what clients send): name that header, e.g. X-Forwarded-Proto, only in that case.
_https = PUBLIC_BASE_URL.startswith("https://")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _https
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _https else 0)
if env.str("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + env.str("SECURE_PROXY_SSL_HEADER").upper().replace("-", "_"),
        "https",
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# The buyer's pages (checkout, Shopify pay and claim) speak these; the API and the admin stay
# English (no LocaleMiddleware: checkout.pages.buyer_page switches per view). Catalogs are in
# locale/ (compiled .mo files are committed; tests/test_buyer_pages.py checks they match).
LANGUAGES = [
    ("en", "English"),
    ("de", "German"),
    ("es", "Spanish"),
    ("fr", "French"),
    ("pt", "Portuguese"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing folder
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.JSONParser"],
    "DEFAULT_METADATA_CLASS": "config.metadata.Metadata",
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
    "EXCEPTION_HANDLER": "config.problems.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Zapgate API",
    "DESCRIPTION": "Self-hosted Bitcoin Lightning checkout gateway.\n\n"
    "Errors are RFC 9457 problem details (`application/problem+json`). No string may "
    "contain the NUL character (`\\u0000`), anywhere in a request: it is refused with a "
    "400.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request bodies get components of their own (no read-only fields; write-only ones
    # shown), so that each side of the contract is exact.
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Lightning ---------------------------------------------------------------------
LIGHTNING_BACKEND = env.str("LIGHTNING_BACKEND", default="devnode")
LND_GRPC_HOST = env.str("LND_GRPC_HOST", default="127.0.0.1:10009")
LND_TLS_CERT = env.str("LND_TLS_CERT", default="")  # file path or PEM text
LND_MACAROON = env.str("LND_MACAROON", default="")  # file path or hex
LND_TIMEOUT_SECONDS = env.float("LND_TIMEOUT_SECONDS", default=10.0)
# How often the dev node's settlement stream looks for new settlements.
DEVNODE_POLL_SECONDS = env.float("DEVNODE_POLL_SECONDS", default=0.005)

# --- The watcher ---------------------------------------------------------------------
WATCHER_ENABLED = env.bool("WATCHER_ENABLED", default=True)
WATCHER_LEASE_SECONDS = env.float("WATCHER_LEASE_SECONDS", default=15.0)
WATCHER_RECONCILE_SECONDS = env.float("WATCHER_RECONCILE_SECONDS", default=300.0)
INVOICE_EXPIRY_SWEEP_SECONDS = env.float("INVOICE_EXPIRY_SWEEP_SECONDS", default=30.0)
# /api/health answers 503 naming the watcher when no watcher has renewed its lease or
# applied a batch for longer than this.
WATCHER_HEALTH_MAX_AGE_SECONDS = env.float("WATCHER_HEALTH_MAX_AGE_SECONDS", default=60.0)
# While a failure lasts, the watcher logs it again every this many seconds.
WATCHER_LOG_REMINDER_SECONDS = env.float("WATCHER_LOG_REMINDER_SECONDS", default=60.0)
# Hold invoices: the watcher follows at most this many open or accepted hold invoices with
# a stream of their own (the newest first); the periodic reconciliation catches the others.
HOLD_INVOICE_MAX_STREAMS = env.int("HOLD_INVOICE_MAX_STREAMS", default=50)
# An accepted hold invoice is canceled this many blocks before its HTLCs expire (LND fails
# them itself 12 blocks before, its invoices.holdexpirydelta): keep it above 12.
HOLD_INVOICE_CANCEL_BLOCKS_BEFORE_EXPIRY = env.int(
    "HOLD_INVOICE_CANCEL_BLOCKS_BEFORE_EXPIRY", default=24
)
# How often the watcher compares the node's block height with held HTLCs' expiry.
HOLD_INVOICE_EXPIRY_CHECK_SECONDS = env.float("HOLD_INVOICE_EXPIRY_CHECK_SECONDS", default=30.0)

# --- Celery --------------------------------------------------------------------------
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default=f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}"
)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Run Celery beat as a thread inside the worker (lightning.worker.BeatThreadStep): for a
# single worker, as `make run` has it. With several workers, run `celery beat` on its own.
WORKER_BEAT = env.bool("WORKER_BEAT", default=False)

# --- Serving and push (realtime) ----------------------------------------------------
# Threads per web process for HTTP requests (config.asgi); WebSockets do not use them. More
# threads in one process mostly wait for the GIL: 8 served 646 status reads/s, 4 served 833.
WEB_THREADS = env.int("WEB_THREADS", default=4)
# The push transport between processes (realtime.push): Redis when PUSH_REDIS_URL is set,
# which it is by default when the Celery broker is Redis; else the embedded transport
# through the database ("" turns Redis off for push).
_broker_redis = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
PUSH_REDIS_URL = env.str("PUSH_REDIS_URL", default=_broker_redis)
# The embedded transport on SQLite: how often each web process with open sockets looks for
# new messages, and how long messages are kept.
PUSH_POLL_SECONDS = env.float("PUSH_POLL_SECONDS", default=0.02)
PUSH_KEEP_SECONDS = env.float("PUSH_KEEP_SECONDS", default=300.0)
# Open sockets per client address (CLIENT_IP_HEADER decides the address) per web process;
# one more is refused at the handshake.
PUSH_MAX_SOCKETS_PER_ADDRESS = env.int("PUSH_MAX_SOCKETS_PER_ADDRESS", default=20)
if PUSH_REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [PUSH_REDIS_URL], "prefix": "zapgate-push"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "realtime.push.DatabaseChannelLayer"}}

# --- checkout settings (owned by the checkout app) ---------------------------------
# The operator's privacy policy and terms for /privacy and /terms: paths to UTF-8 text files
# (blank lines separate paragraphs). Empty: a sensible default text.
PRIVACY_POLICY_FILE = env.str("PRIVACY_POLICY_FILE", default="")
TERMS_OF_SERVICE_FILE = env.str("TERMS_OF_SERVICE_FILE", default="")
# Exchange rates: "fixed" (FIXED_RATES, fiat units per BTC; works offline) or "coingecko"
# (RATE_PROVIDER_URL, cached RATE_CACHE_SECONDS, RATE_PROVIDER_TIMEOUT seconds to answer).
RATE_PROVIDER = env.str("RATE_PROVIDER", default="fixed")
FIXED_RATES = env.str("FIXED_RATES", default="USD=100000,EUR=92000")
RATE_PROVIDER_URL = env.str(
    "RATE_PROVIDER_URL", default="https://api.coingecko.com/api/v3/simple/price"
)
RATE_PROVIDER_TIMEOUT = env.float("RATE_PROVIDER_TIMEOUT", default=5.0)
RATE_CACHE_SECONDS = env.int("RATE_CACHE_SECONDS", default=60)
# The largest checkout invoice, in sats (1 BTC by default).
CHECKOUT_MAX_INVOICE_SATS = env.int("CHECKOUT_MAX_INVOICE_SATS", default=100_000_000)
# Keyless product checkouts (payment links) per client address per minute.
CHECKOUT_PUBLIC_RATE_PER_MINUTE = env.int("CHECKOUT_PUBLIC_RATE_PER_MINUTE", default=30)
# The header a trusted reverse proxy puts the client address in (e.g. X-Real-IP);
# empty: the address of the TCP peer. Used by config.ratelimit.
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="")
# The cache must be shared by every web worker (rate limits, exchange rates): a file cache
# in the data folder by default, CACHE_URL=redis://... in production.
CACHES = {
    "default": env.cache_url(
        "CACHE_URL", default=f"filecache://{DATA_DIR / 'cache'}?max_entries=100000"
    )
}
# Receipts: console by default; EMAIL_URL=smtp+tls://user:password@host:587 for SMTP.
globals().update(
    {k: v for k, v in env.email_url("EMAIL_URL", default="consolemail://").items() if v}
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Zapgate <receipts@localhost>")
CHECKOUT_RECEIPT_SWEEP_SECONDS = env.float("CHECKOUT_RECEIPT_SWEEP_SECONDS", default=60.0)
CHECKOUT_CELERY_BEAT_SCHEDULE = {  # merged into CELERY_BEAT_SCHEDULE below
    "send-due-receipts": {
        "task": "checkout.tasks.send_due_receipts",
        "schedule": CHECKOUT_RECEIPT_SWEEP_SECONDS,
    },
}
# OpenAPI: name the checkout status enum (other apps have "status" fields too).
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})["CheckoutStatusEnum"] = (
    "checkout.models.CheckoutInvoice.Status"
)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["CurrencyEnum"] = "checkout.models.Product.Currency"
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["SatCurrencyEnum"] = "checkout.serializers.SAT_ONLY"
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["FiatCurrencyEnum"] = "checkout.serializers.FIAT"
# --- end checkout settings

# --- webhooks settings (owned by the webhooks app) ---------------------------------
# Key that encrypts the signing secrets at rest; empty: derived from SECRET_KEY (changing it
# makes the stored secrets unreadable: rotate every secret after such a change).
WEBHOOKS_SECRETS_KEY = env.str("WEBHOOKS_SECRETS_KEY", default="")
# Key that encrypts merchants' Nostr Wallet Connect strings at rest (they hold a spending
# key); empty: derived from SECRET_KEY (changing it makes the stored strings unreadable).
NWC_SECRETS_KEY = env.str("NWC_SECRETS_KEY", default="")
# Let endpoints resolve to private, loopback or link-local addresses (local demos only).
WEBHOOKS_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOKS_ALLOW_PRIVATE_TARGETS", default=False)
# Whole request, connect to last byte read.
WEBHOOKS_TIMEOUT_SECONDS = env.float("WEBHOOKS_TIMEOUT_SECONDS", default=10.0)
# How long a claimed delivery waits for its sender before anyone may claim it again: a
# crashed worker's deliveries are retried after this. An attempt under way holds it for
# its whole timeout.
WEBHOOKS_LEASE_SECONDS = env.float("WEBHOOKS_LEASE_SECONDS", default=15.0)
# How often Celery beat sweeps up due deliveries (retries, lost messages, crashed workers).
WEBHOOKS_SWEEP_SECONDS = env.float("WEBHOOKS_SWEEP_SECONDS", default=5.0)
# An endpoint whose attempts have all failed for this long is disabled, its merchant told.
WEBHOOKS_DISABLE_AFTER_DAYS = env.float("WEBHOOKS_DISABLE_AFTER_DAYS", default=5.0)
# Sender threads in each Celery worker process and each web server process: a delivery
# written there (the watcher's payments, a request's invoice.created) is sent from the same
# process right after commit, with no broker round trip. 0: every delivery goes through the
# broker as a task.
WEBHOOKS_WORKER_SENDERS = env.int("WEBHOOKS_WORKER_SENDERS", default=8)
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})["WebhookDeliveryStatusEnum"] = (
    "webhooks.models.WebhookDelivery.Status"
)
WEBHOOKS_CELERY_BEAT_SCHEDULE = {  # merged into CELERY_BEAT_SCHEDULE below
    "webhooks-deliver-due": {
        "task": "webhooks.tasks.deliver_due",
        "schedule": WEBHOOKS_SWEEP_SECONDS,
    },
}
# --- end webhooks settings

# --- agents settings (owned by the agents app) ---------------------------------
# How long a key-ownership challenge may be signed and sent back.
AGENTS_CHALLENGE_TTL_SECONDS = env.int("AGENTS_CHALLENGE_TTL_SECONDS", default=300)
# NIP-98: how far an event's created_at may be from now (either way).
AGENTS_NIP98_WINDOW_SECONDS = env.int("AGENTS_NIP98_WINDOW_SECONDS", default=60)
# Per client address, per AGENTS_RATE_LIMIT_PERIOD_SECONDS.
AGENTS_RATE_LIMIT_PERIOD_SECONDS = env.int("AGENTS_RATE_LIMIT_PERIOD_SECONDS", default=60)
AGENTS_REGISTER_RATE_LIMIT = env.int("AGENTS_REGISTER_RATE_LIMIT", default=10)
AGENTS_CHALLENGE_RATE_LIMIT = env.int("AGENTS_CHALLENGE_RATE_LIMIT", default=30)
AGENTS_VERIFY_RATE_LIMIT = env.int("AGENTS_VERIFY_RATE_LIMIT", default=30)
# --- end agents settings

# --- l402 settings (owned by the l402 app) ---------------------------------
# Server secret the per-token macaroon root keys are derived from (HMAC-SHA256(secret,
# token id)). Defaults to a value derived from SECRET_KEY; changing it voids every token.
L402_ROOT_KEY_SECRET = env.str("L402_ROOT_KEY_SECRET", default="")
L402_TOKEN_TTL_SECONDS = env.int("L402_TOKEN_TTL_SECONDS", default=86400)  # expiry caveat
L402_INVOICE_EXPIRY_SECONDS = env.int("L402_INVOICE_EXPIRY_SECONDS", default=900)
L402_DEMO_PRICE_SATS = env.int("L402_DEMO_PRICE_SATS", default=10)
L402_PREMIUM_PRICE_SATS = env.int("L402_PREMIUM_PRICE_SATS", default=100)
L402_PING_PRICE_SATS = env.int("L402_PING_PRICE_SATS", default=1)
# Reverse-proxy targets on private/loopback addresses are refused unless this is on.
L402_PROXY_ALLOW_PRIVATE_TARGETS = env.bool("L402_PROXY_ALLOW_PRIVATE_TARGETS", default=False)
L402_PROXY_MAX_TIMEOUT_SECONDS = env.int("L402_PROXY_MAX_TIMEOUT_SECONDS", default=120)
# What GET /api/mcp/version-check answers.
L402_MCP_LATEST_VERSION = env.str("L402_MCP_LATEST_VERSION", default="1.0.0")
L402_MCP_MIN_VERSION = env.str("L402_MCP_MIN_VERSION", default="1.0.0")
L402_MCP_RELEASE_NOTES = env.str("L402_MCP_RELEASE_NOTES", default="")
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})["HttpMethodEnum"] = (
    "l402.services.proxies.PROXY_METHODS"
)
# --- end l402 settings

# --- shopify_bridge settings (owned by the shopify_bridge app) ---------------------------------
# Where a store's Admin GraphQL API is: a template with {shop} (the *.myshopify.com domain)
# and {version}. Tests point it at a fake Shopify on loopback.
SHOPIFY_API_BASE_URL = env.str(
    "SHOPIFY_API_BASE_URL", default="https://{shop}/admin/api/{version}/graphql.json"
)
SHOPIFY_TIMEOUT_SECONDS = env.float("SHOPIFY_TIMEOUT_SECONDS", default=20.0)
# Key that encrypts stores' access tokens and webhook secrets at rest; empty: derived from
# SECRET_KEY (changing it makes the stored secrets unreadable).
SHOPIFY_SECRETS_KEY = env.str("SHOPIFY_SECRETS_KEY", default="")
# How long a cart's invoice may be paid.
SHOPIFY_ORDER_EXPIRY_SECONDS = env.int("SHOPIFY_ORDER_EXPIRY_SECONDS", default=900)
# Per client address per minute: carts checked out (each makes an invoice) and claim or
# order-status attempts with a claim token.
SHOPIFY_CHECKOUT_RATE_PER_MINUTE = env.int("SHOPIFY_CHECKOUT_RATE_PER_MINUTE", default=30)
SHOPIFY_CLAIM_RATE_PER_MINUTE = env.int("SHOPIFY_CLAIM_RATE_PER_MINUTE", default=10)
# Seconds the public catalog may be cached by browsers and CDNs.
SHOPIFY_CATALOG_MAX_AGE = env.int("SHOPIFY_CATALOG_MAX_AGE", default=60)
SHOPIFY_SYNC_SECONDS = env.float("SHOPIFY_SYNC_SECONDS", default=3600.0)
SHOPIFY_PUSH_SWEEP_SECONDS = env.float("SHOPIFY_PUSH_SWEEP_SECONDS", default=10.0)
SHOPIFY_CELERY_BEAT_SCHEDULE = {  # merged into CELERY_BEAT_SCHEDULE below
    "shopify-sync-catalogs": {
        "task": "shopify_bridge.tasks.sync_all_catalogs",
        "schedule": SHOPIFY_SYNC_SECONDS,
    },
    "shopify-push-due-orders": {
        "task": "shopify_bridge.tasks.push_due_orders",
        "schedule": SHOPIFY_PUSH_SWEEP_SECONDS,
    },
}
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})["ShopifyOrderStatusEnum"] = (
    "shopify_bridge.models.ShopifyOrder.Status"
)
# --- end shopify_bridge settings

# --- Logging -------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
# --- wallets settings (owned by the wallets app) -----------------------------------------
# What an outgoing payment may spend on routing fees, and so reserves from the balance until
# it ends: the larger of an absolute floor and a share of the amount (LNbits' reserve rule).
WALLETS_FEE_LIMIT_MIN_SATS = env.int("WALLETS_FEE_LIMIT_MIN_SATS", default=10)
WALLETS_FEE_LIMIT_PERCENT = Decimal(env.str("WALLETS_FEE_LIMIT_PERCENT", default="1.0"))
# How long a request waits for the node to finish a payment before it answers "pending"
# (the payment goes on; the sweep records its outcome).
WALLETS_PAY_TIMEOUT_SECONDS = env.float("WALLETS_PAY_TIMEOUT_SECONDS", default=30.0)
# How often the sweep asks the node about pending payments whose sender stopped, and how
# long one sweep's claim on a payment lasts.
WALLETS_SWEEP_SECONDS = env.float("WALLETS_SWEEP_SECONDS", default=5.0)
WALLETS_SWEEP_CLAIM_SECONDS = env.float("WALLETS_SWEEP_CLAIM_SECONDS", default=10.0)
WALLETS_CELERY_BEAT_SCHEDULE = {  # merged into CELERY_BEAT_SCHEDULE below
    "wallets-resolve-pending-payments": {
        "task": "wallets.tasks.resolve_pending_payments",
        "schedule": WALLETS_SWEEP_SECONDS,
    },
}
# --- end wallets settings
# --- refunds settings (owned by the refunds app) -----------------------------------------
# How long a refund link (LNURL-withdraw and paste page) can be claimed; the merchant may
# reissue it afterwards.
REFUNDS_LINK_SECONDS = env.int("REFUNDS_LINK_SECONDS", default=7 * 24 * 3600)
# Fetching an invoice from a buyer's Lightning address / LNURL-pay: the timeout of each
# request, how many times a refund tries (a server that is down), the first retry delay
# (doubling), and whether addresses on private or loopback networks may be fetched.
REFUNDS_FETCH_TIMEOUT_SECONDS = env.float("REFUNDS_FETCH_TIMEOUT_SECONDS", default=10.0)
REFUNDS_ADDRESS_ATTEMPTS = env.int("REFUNDS_ADDRESS_ATTEMPTS", default=5)
REFUNDS_RETRY_SECONDS = env.float("REFUNDS_RETRY_SECONDS", default=30.0)
REFUNDS_ALLOW_PRIVATE_TARGETS = env.bool("REFUNDS_ALLOW_PRIVATE_TARGETS", default=False)
# How often the sweep runs (expire links, retry addresses, resume payouts, send emails).
REFUNDS_SWEEP_SECONDS = env.float("REFUNDS_SWEEP_SECONDS", default=5.0)
REFUNDS_CELERY_BEAT_SCHEDULE = {  # merged into CELERY_BEAT_SCHEDULE below
    "refunds-sweep": {"task": "refunds.tasks.sweep", "schedule": REFUNDS_SWEEP_SECONDS},
}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["RefundRateChoiceEnum"] = (
    "refunds.models.Refund.RateChoice"
)
# --- end refunds settings
# --- orders settings (owned by the orders app) ---------------------------------------------
# How long an order's Lightning invoice can be paid (the seed's invoiceTime: 15 minutes).
ORDERS_INVOICE_SECONDS = env.int("ORDERS_INVOICE_SECONDS", default=900)
# How often the sweep processes orders whose task was lost and sends unsent receipts.
ORDERS_SWEEP_SECONDS = env.float("ORDERS_SWEEP_SECONDS", default=5.0)
ORDERS_CELERY_BEAT_SCHEDULE = {  # merged into CELERY_BEAT_SCHEDULE below
    "orders-sweep": {"task": "orders.tasks.sweep", "schedule": ORDERS_SWEEP_SECONDS},
}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["OrderStatusEnum"] = "orders.models.Order.Status"
# --- end orders settings
# --- notifications settings (owned by the notifications app) -----------------------------
# The daily summary (yesterday's sales) goes out at the first beat after this hour (UTC).
NOTIFY_DAILY_SUMMARY_HOUR_UTC = env.int("NOTIFY_DAILY_SUMMARY_HOUR_UTC", default=7)
NOTIFICATIONS_CELERY_BEAT_SCHEDULE = {  # merged into CELERY_BEAT_SCHEDULE below
    "notifications-send-due-sale-notices": {
        "task": "notifications.tasks.send_due_sale_notices",
        "schedule": 60.0,
    },
    "notifications-send-daily-summaries": {
        "task": "notifications.tasks.send_daily_summaries",
        "schedule": 900.0,
    },
}
# --- end notifications settings

CELERY_BEAT_SCHEDULE = {
    "reconcile-invoices": {
        "task": "lightning.tasks.reconcile_invoices",
        "schedule": WATCHER_RECONCILE_SECONDS,
    },
    "expire-invoices": {
        "task": "lightning.tasks.expire_invoices",
        "schedule": INVOICE_EXPIRY_SWEEP_SECONDS,
    },
    "retry-invoice-reactions": {
        "task": "lightning.tasks.retry_pending_reactions",
        "schedule": 10.0,
    },
    "prune-push-messages": {"task": "realtime.tasks.prune_push_messages", "schedule": 60.0},
    **CHECKOUT_CELERY_BEAT_SCHEDULE,
    **WEBHOOKS_CELERY_BEAT_SCHEDULE,
    **SHOPIFY_CELERY_BEAT_SCHEDULE,
    **WALLETS_CELERY_BEAT_SCHEDULE,
    **REFUNDS_CELERY_BEAT_SCHEDULE,
    **ORDERS_CELERY_BEAT_SCHEDULE,
    **NOTIFICATIONS_CELERY_BEAT_SCHEDULE,
}
