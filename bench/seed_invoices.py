"""Seed a gateway's database with N past checkout invoices (default 1,000,000), as a shop
that has sold for a while would have them, to measure what the tables' size costs.

    .venv/bin/python bench/seed_invoices.py [-n 1000000] [--days 90] [--batch 20000]

Writes to the database that the settings point at (ZAPGATE_DATA_DIR, DATABASE_URL), after
migrating it, everything a real checkout leaves behind, in bulk (executemany on SQLite, COPY
on PostgreSQL) and in batches: the dev node's invoice (DevNodeInvoice), the gateway's
(lightning.Invoice) and its transition, the checkout, the wallet payment that follows it,
the wallet's credit (LedgerEntry) when paid, and for one merchant with a webhook endpoint
its delivered `invoice.created` and `payment.*` events. The invoices are spread over the
last `--days` days across the demo merchant of `make run` (40%) and four others: about 62%
paid, the rest expired, and those of the last 15 minutes still open. The dev node's settle
index counter, the watcher's settle index and the wallets' balances are moved on to match.
BOLT11 strings are unsigned look-alikes (unique, of a real invoice's length): the seeded
invoices are never paid again, and signing a million would take longer than the rest.
"""

import argparse
import hashlib
import json
import os
import random
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
OTHER_MERCHANTS = ["Seed Books", "Seed Hardware", "Seed Streaming", "Seed Bakery"]
# Share of the invoices of the demo merchant, then of each other merchant.
MERCHANT_WEIGHTS = [0.40, 0.25, 0.15, 0.12, 0.08]
WEBHOOK_MERCHANT = "Seed Streaming"  # has an endpoint: its events and deliveries are seeded
PAID_SHARE = 0.62
EXPIRY_SECONDS = 900


def public_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(15).replace('-', 'x').replace('_', 'y')}"


HEX_TO_BECH32 = str.maketrans("0123456789abcdef", BECH32[:16])
BYTE_TO_BECH32 = bytes(ord(BECH32[i % 32]) for i in range(256))


def fake_bolt11(payment_hash: str, sats: int) -> str:
    """A bech32-looking string as long as a real regtest invoice with a short memo,
    unique through the payment hash it carries."""
    tail = os.urandom(208).translate(BYTE_TO_BECH32).decode()
    return f"lnbcrt{sats * 10}n1p{payment_hash.translate(HEX_TO_BECH32)}{tail}"


class Writer:
    """Bulk inserts of plain value tuples into a model's table, by the vendor's fastest
    path. Times and decimals in the tuples go through `time()` and `decimal()` first."""

    def __init__(self, connection):
        self.connection = connection
        self.vendor = connection.vendor
        connection.ensure_connection()
        self.raw = connection.connection
        if self.vendor == "sqlite":
            # Only this connection: no fsync, and a cache large enough for the indexes.
            self.raw.execute("PRAGMA synchronous=OFF")
            self.raw.execute("PRAGMA cache_size=-1000000")

    def columns(self, model, names):
        return [model._meta.get_field(name).column for name in names]

    def defaults(self, model, names) -> tuple[list[str], tuple]:
        """The columns `names` leaves out that cannot be NULL, with their model defaults
        (columns added since this script was written keep it working)."""
        columns, values = [], []
        for field in model._meta.concrete_fields:
            if field.name in names or field.primary_key or field.null:
                continue
            if not field.has_default() and not field.empty_strings_allowed:
                continue
            value = field.get_default()
            if isinstance(value, dict | list):
                value = json.dumps(value)
            elif isinstance(value, bool) and self.vendor == "sqlite":
                value = int(value)
            columns.append(field.column)
            values.append(value)
        return columns, tuple(values)

    def insert(self, model, names, rows):
        if not rows:
            return
        table = model._meta.db_table
        extra_columns, extra_values = self.defaults(model, names)
        columns = self.columns(model, names) + extra_columns
        if extra_values:
            rows = [tuple(row) + extra_values for row in rows]
        if self.vendor == "postgresql":
            with self.raw.cursor() as cursor:
                quoted = ", ".join(f'"{c}"' for c in columns)
                with cursor.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            quoted = ", ".join(f'"{c}"' for c in columns)
            self.raw.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({marks})', rows)

    def time(self, value: datetime | None):
        """A UTC time as the driver takes it (Django's text form on SQLite)."""
        if value is None or self.vendor != "sqlite":
            return value
        return value.replace(tzinfo=None).isoformat(" ")

    def decimal(self, value: Decimal | None):
        return str(value) if value is not None and self.vendor == "sqlite" else value

    def commit(self):
        self.raw.commit()


def next_id(model) -> int:
    from django.db.models import Max

    return (model.objects.aggregate(m=Max("pk"))["m"] or 0) + 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="checkout invoices to add")
    parser.add_argument("--days", type=float, default=90.0, help="spread over this many days")
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=None, help="random seed (repeatable mix)")
    args = parser.parse_args()
    if args.seed is not None:
        random.seed(args.seed)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.core.management.color import no_style
    from django.db import connection, transaction
    from django.db.models import F

    from checkout import rates
    from checkout.models import CheckoutInvoice, Merchant, Product
    from checkout.services import DEMO_MERCHANT, PURPOSE, seed_demo
    from lightning.backends import get_backend
    from lightning.models import DevNodeCounter, DevNodeInvoice, Invoice, InvoiceTransition
    from wallets.models import LedgerEntry, Payment, Wallet
    from wallets.services import wallet_for
    from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
    from webhooks.services import isoformat

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    if not Merchant.objects.filter(name=DEMO_MERCHANT).exists():
        seed_demo()  # the merchant `make run` uses (its key is issued again at each run)
    merchants = [Merchant.objects.get(name=DEMO_MERCHANT)]
    for name in OTHER_MERCHANTS:
        merchants.append(
            Merchant.objects.get_or_create(name=name, defaults={"email": "owner@example.com"})[0]
        )
    wallets = {m.pk: wallet_for(m) for m in merchants}
    products = {m.pk: list(Product.objects.filter(merchant=m)) for m in merchants}
    for m in merchants[1:]:
        if not products[m.pk]:
            products[m.pk] = [
                Product.objects.create(merchant=m, name=f"{m.name} item", price=5, currency="USD")
            ]
    hook_merchant = next(m for m in merchants if m.name == WEBHOOK_MERCHANT)
    endpoint = WebhookEndpoint.objects.filter(merchant=hook_merchant).first()
    if endpoint is None:
        endpoint = WebhookEndpoint.objects.create(
            merchant=hook_merchant,
            url="https://hooks.seed.example/zapgate",
            events=["*"],
            secret="whsec_" + secrets.token_urlsafe(24),
        )
    fiat = {"USD": Decimal(100000), "EUR": Decimal(92000)}
    try:
        fiat.update(rates._fixed_rates())
    except rates.RateUnavailable:
        pass

    backend = get_backend()
    node_key = f"{backend.name}:{backend.get_info().pubkey}"
    writer = Writer(connection)
    ids = {
        model: next_id(model)
        for model in (
            DevNodeInvoice,
            Invoice,
            InvoiceTransition,
            CheckoutInvoice,
            Payment,
            LedgerEntry,
            WebhookEvent,
            WebhookDelivery,
        )
    }
    counter, _ = DevNodeCounter.objects.get_or_create(pk=1)
    first_settle_index = counter.last_settle_index + 1

    now = datetime.now(UTC)
    span = timedelta(days=args.days).total_seconds()
    # Creation times, oldest first, so ids grow with time as they do in a real table.
    offsets = sorted((random.random() * span for _ in range(args.n)), reverse=True)
    settle_index = counter.last_settle_index
    credits = dict.fromkeys(wallets, 0)

    names = {
        DevNodeInvoice: [
            "id", "payment_hash", "preimage", "payment_addr", "bolt11", "amount_msat", "memo",
            "hold", "state", "created_at", "expires_at", "settled_at", "amount_paid_msat",
            "settle_index", "htlc_expiry_height",
        ],
        Invoice: [
            "id", "payment_hash", "bolt11", "amount_msat", "memo", "state", "created_at",
            "expires_at", "paid_at", "amount_paid_msat", "settle_index", "preimage", "hold",
            "backend", "purpose", "accepted_at", "htlc_expiry_height", "canceled_reason",
        ],
        InvoiceTransition: ["id", "invoice", "from_state", "to_state", "at", "settle_index"],
        CheckoutInvoice: [
            "id", "public_id", "merchant", "invoice", "product", "quantity", "amount",
            "currency", "sats_amount", "rate", "rate_source", "description", "user_ref",
            "email", "send_email", "receipt_sent_at", "redirect_url", "webhook_url",
            "metadata", "idempotency_key", "created_at", "receipt_due_at",
        ],
        Payment: [
            "id", "wallet", "direction", "status", "payment_hash", "bolt11", "amount_msat",
            "fee_limit_msat", "fee_msat", "preimage", "memo", "extra", "webhook", "tag",
            "invoice", "internal", "failure_reason", "locked_until", "next_check_at",
            "expires_at", "created_at", "settled_at",
        ],
        LedgerEntry: ["id", "wallet", "payment", "invoice", "kind", "amount_msat", "created_at"],
        WebhookEvent: ["id", "public_id", "merchant", "type", "source", "body", "created_at"],
        WebhookDelivery: [
            "id", "public_id", "event", "endpoint", "url", "status", "attempt_count",
            "failures", "next_attempt_at", "lease_token", "locked_until", "delivered_at",
            "last_status_code", "last_error", "created_at",
        ],
    }  # fmt: skip
    counts = dict.fromkeys(names, 0)
    pg = connection.vendor == "postgresql"

    def json_value(data):
        return json.dumps(data, separators=(",", ":"))

    T, D = writer.time, writer.decimal
    done = 0
    while done < args.n:
        batch = offsets[done : done + args.batch]
        rows = {model: [] for model in names}
        for offset in batch:
            created = now - timedelta(seconds=offset)
            created = created.replace(microsecond=0)  # BOLT11 times are whole seconds
            expires = created + timedelta(seconds=EXPIRY_SECONDS)
            merchant = random.choices(merchants, MERCHANT_WEIGHTS)[0]
            currency = random.choices(["SAT", "USD", "EUR"], [0.5, 0.4, 0.1])[0]
            product = None
            quantity = 1
            if random.random() < 0.3:
                product = random.choice(products[merchant.pk])
                currency, quantity = product.currency, random.choice([1, 1, 1, 2, 3])
                amount = product.price * quantity
            elif currency == "SAT":
                amount = Decimal(random.choice([100, 500, 1000, 2100, 5000, 21000]))
            else:
                amount = Decimal(random.randint(100, 20000)) / 100
            rate = None if currency == "SAT" else fiat[currency]
            sats = int(amount) if rate is None else max(1, int(amount * 100_000_000 / rate))
            msat = sats * 1000
            preimage = secrets.token_bytes(32)
            payment_hash = hashlib.sha256(preimage).hexdigest()
            bolt11 = fake_bolt11(payment_hash, sats)
            description = product.name if product else random.choice(["", "Order", "Donation"])
            memo = description
            if expires > now:
                state = "paid" if random.random() < 0.4 else "open"
            else:
                state = "paid" if random.random() < PAID_SHARE else "expired"
            paid_at = None
            if state == "paid":
                paid_at = created + timedelta(seconds=random.randint(5, 600))
                paid_at = min(paid_at, now)
                settle_index += 1
            c_t, e_t, p_t = T(created), T(expires), T(paid_at)
            invoice_id = ids[Invoice]
            ids[Invoice] += 1
            rows[DevNodeInvoice].append(
                (
                    ids[DevNodeInvoice], payment_hash, preimage.hex(), secrets.token_hex(32),
                    bolt11, msat, memo, False, "SETTLED" if paid_at else "OPEN", c_t,
                    e_t, p_t, msat if paid_at else None,
                    settle_index if paid_at else None, None,
                )
            )  # fmt: skip
            ids[DevNodeInvoice] += 1
            rows[Invoice].append(
                (
                    invoice_id, payment_hash, bolt11, msat, memo, state, c_t, e_t,
                    p_t, msat if paid_at else None, settle_index if paid_at else None,
                    preimage.hex() if paid_at else "", False, backend.name, PURPOSE, None, None,
                    "",
                )
            )  # fmt: skip
            if state != "open":
                at = paid_at or expires + timedelta(seconds=random.randint(1, 30))
                rows[InvoiceTransition].append(
                    (
                        ids[InvoiceTransition], invoice_id, "open", state, T(at),
                        settle_index if paid_at else None,
                    )
                )  # fmt: skip
                ids[InvoiceTransition] += 1
            checkout_id = ids[CheckoutInvoice]
            ids[CheckoutInvoice] += 1
            send_email = random.random() < 0.1
            user_ref = f"order-{random.randint(1, 10**7)}" if random.random() < 0.5 else ""
            metadata = {"orderId": user_ref} if user_ref else {}
            checkout_public_id = public_id("inv")
            rows[CheckoutInvoice].append(
                (
                    checkout_id, checkout_public_id, merchant.pk, invoice_id,
                    product.pk if product else None, quantity, D(amount), currency, sats, D(rate),
                    "" if rate is None else "fixed", description, user_ref,
                    "buyer@example.com" if send_email else "", send_email,
                    p_t if send_email else None, "", "",
                    json_value(metadata), None, c_t, None,
                )
            )  # fmt: skip
            wallet = wallets[merchant.pk]
            payment_id = ids[Payment]
            ids[Payment] += 1
            status = {"paid": "success", "expired": "failed", "open": "pending"}[state]
            rows[Payment].append(
                (
                    payment_id, wallet.pk, "in", status, payment_hash, bolt11, msat, 0, 0,
                    preimage.hex() if paid_at else "", memo, "{}", "", "",
                    invoice_id, False, "expired unpaid" if state == "expired" else "", None,
                    None, e_t, c_t, p_t,
                )
            )  # fmt: skip
            if paid_at:
                rows[LedgerEntry].append(
                    (ids[LedgerEntry], wallet.pk, payment_id, invoice_id, "credit", msat, p_t)
                )
                ids[LedgerEntry] += 1
                credits[merchant.pk] += msat
            if merchant.pk == hook_merchant.pk:
                events = [("invoice.created", created)]
                if state != "open":
                    kind = "payment.completed" if paid_at else "payment.expired"
                    events.append((kind, paid_at or expires + timedelta(seconds=5)))
                for type_, at in events:
                    event_id = ids[WebhookEvent]
                    ids[WebhookEvent] += 1
                    event_public_id = public_id("evt")
                    body = json_value(
                        {
                            "id": event_public_id,
                            "type": type_,
                            "createdAt": isoformat(at),
                            "data": {
                                "invoiceId": checkout_public_id,
                                "userRef": user_ref,
                                "status": {"paid": "paid", "open": "unpaid"}.get(
                                    state if type_ != "invoice.created" else "open", "expired"
                                ),
                                "amount": str(amount),
                                "currency": currency,
                                "amountSats": sats,
                                "paidAt": isoformat(paid_at) if paid_at else None,
                                "metadata": metadata,
                            },
                        }
                    )
                    rows[WebhookEvent].append(
                        (
                            event_id, event_public_id, merchant.pk, type_,
                            f"checkout:{checkout_id}", body, T(at),
                        )
                    )  # fmt: skip
                    delivered = at + timedelta(milliseconds=random.randint(20, 400))
                    rows[WebhookDelivery].append(
                        (
                            ids[WebhookDelivery], public_id("whd"), event_id, endpoint.pk, "",
                            "delivered", 1, 0, None, "", None, T(delivered), 200, "", T(at),
                        )
                    )  # fmt: skip
                    ids[WebhookDelivery] += 1
        with transaction.atomic():
            for model, model_rows in rows.items():
                writer.insert(model, names[model], model_rows)
                counts[model] += len(model_rows)
        done += len(batch)
        elapsed = time.perf_counter() - started
        print(f"  {done:>9,} invoices seeded, {elapsed:6.1f} s", flush=True)

    with transaction.atomic():
        DevNodeCounter.objects.filter(pk=1, last_settle_index__lt=settle_index).update(
            last_settle_index=settle_index
        )
        # The watcher has applied every settlement the node made before (the seeded ones
        # are recorded paid already): it goes on from the new end of the stream. A watcher
        # that was behind is left where it was.
        from lightning.models import WatcherState

        state, made = WatcherState.objects.get_or_create(node_key=node_key)
        if made or state.settle_index == first_settle_index - 1:
            WatcherState.objects.filter(node_key=node_key).update(settle_index=settle_index)
        for merchant_pk, credit in credits.items():
            Wallet.objects.filter(pk=wallets[merchant_pk].pk).update(
                balance_msat=F("balance_msat") + credit
            )
    if pg:
        models = list(names)
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), models):
                cursor.execute(sql)
            # What autovacuum does soon after such a load (PostgreSQL 13 and later vacuum a
            # table after many inserts, too): done here, so that it does not run, a core
            # busy for a minute, inside the measurement that follows. (SQLite has no
            # statistics unless someone runs ANALYZE, and the gateway does not: its plans
            # are left to the planner's defaults, as in a deployment.)
            cursor.execute("VACUUM ANALYZE")
    elapsed = time.perf_counter() - started
    database = settings.DATABASES["default"]
    where = database["NAME"] if connection.vendor == "sqlite" else f"PostgreSQL {database['NAME']}"
    print(f"Seeded {args.n:,} checkout invoices into {where} in {elapsed:.1f} s:")
    for model, count in counts.items():
        print(f"  {model._meta.label:28} {count:>10,} rows")


if __name__ == "__main__":
    main()
