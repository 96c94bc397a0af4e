"""`config.prepared`: the rows `insert` writes read back as the ORM's own create writes
them, and a refused row leaves the transaction around it usable; `update` writes what
`save(update_fields=...)` writes, only where its condition holds; prepared reads load the
instances the ORM loads."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from checkout.models import CheckoutInvoice, Merchant
from checkout.services import create_merchant
from config.prepared import Prepared, columns, insert, update
from lightning import services as lightning_services
from lightning.models import Invoice
from webhooks.models import MerchantWebhookSecret
from webhooks.services import default_secret


def _invoice(memo: str) -> Invoice:
    return lightning_services.create_invoice(21_000, memo)


def _fields(row) -> dict:
    data = {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields}
    for name in ("id", "public_id", "invoice_id", "created_at", "updated_at"):
        data.pop(name, None)
    return data


@pytest.mark.django_db
def test_an_inserted_row_reads_back_like_one_the_orm_created():
    merchant = create_merchant("Prepared")[0]
    terms = dict(
        merchant=merchant,
        quantity=2,
        amount=Decimal("12.34"),
        currency="USD",
        sats_amount=12_345,
        rate=Decimal("99999.12345678"),
        rate_source="test",
        description="caf\u00e9 \u26a1",
        metadata={"order": 7, "tags": ["a", "b"], "nested": {"x": None}},
    )
    by_orm = CheckoutInvoice.objects.create(invoice=_invoice("orm"), **terms)
    made = insert(CheckoutInvoice(invoice=_invoice("insert"), **terms))
    assert made.pk is not None and made.pk != by_orm.pk
    assert not made._state.adding  # a later save() updates this row, not a second one
    stored = CheckoutInvoice.objects.get(pk=made.pk)
    assert _fields(stored) == _fields(CheckoutInvoice.objects.get(pk=by_orm.pk))
    assert stored.public_id == made.public_id and stored.public_id.startswith("inv_")
    assert stored.created_at is not None and stored.created_at >= by_orm.created_at
    # A value of another type than the field's goes through Django's conversion.
    converted = insert(CheckoutInvoice(invoice=_invoice("text"), **{**terms, "quantity": "3"}))
    assert CheckoutInvoice.objects.get(pk=converted.pk).quantity == 3
    made.description = "changed"
    made.save()
    assert CheckoutInvoice.objects.filter(description="changed").count() == 1


@pytest.mark.django_db
def test_a_refused_insert_raises_integrity_error_and_writes_nothing():
    invoice = _invoice("taken")
    with transaction.atomic():
        with pytest.raises(IntegrityError), transaction.atomic():
            insert(Invoice(payment_hash=invoice.payment_hash, bolt11="lnbc1", amount_msat=1000))
        assert Invoice.objects.filter(payment_hash=invoice.payment_hash).count() == 1


@pytest.mark.django_db
def test_update_writes_the_named_fields_as_save_does_and_only_where_its_condition_holds():
    invoice = _invoice("update")
    twin = _invoice("twin")
    paid_at = invoice.created_at + timedelta(seconds=5)
    big = 2**31 * 1000 + 7  # past 32 bits of millisatoshis
    invoice.state, invoice.paid_at, invoice.amount_paid_msat = "paid", paid_at, big
    invoice.memo = "not written"
    assert update(invoice, ("state", "paid_at", "amount_paid_msat"), only_if=("state", "open"))
    stored = Invoice.objects.get(pk=invoice.pk)
    assert (stored.state, stored.paid_at, stored.amount_paid_msat) == ("paid", paid_at, big)
    assert stored.memo == "update"  # only the named fields
    assert Invoice.objects.get(pk=twin.pk).state == "open"  # only its own row
    # The condition no longer holds: nothing is written.
    invoice.amount_paid_msat = 1
    assert update(invoice, ("amount_paid_msat",), only_if=("state", "open")) == 0
    assert update(invoice, ("amount_paid_msat",), unless=("state", "paid")) == 0
    assert Invoice.objects.get(pk=invoice.pk).amount_paid_msat == big
    assert update(invoice, ("amount_paid_msat",), unless=("state", "open")) == 1
    assert Invoice.objects.get(pk=invoice.pk).amount_paid_msat == 1


@pytest.mark.django_db
def test_prepared_rows_load_as_the_orms_instances_and_an_outer_join_that_finds_nothing_as_none():
    with_secret = create_merchant("With secret")[0]
    default_secret(with_secret)
    without = create_merchant("Without secret")[0]
    made = {
        m.pk: CheckoutInvoice.objects.create(
            invoice=_invoice(m.name), merchant=m, amount=Decimal("1"), currency="SAT", sats_amount=1
        )
        for m in (with_secret, without)
    }
    read = Prepared(
        lambda invoice_id: CheckoutInvoice.objects.filter(invoice_id=invoice_id).values_list(
            *columns(CheckoutInvoice),
            *columns(Merchant, "merchant__"),
            *columns(MerchantWebhookSecret, "merchant__webhook_secret__"),
        ),
        integers=True,
    )
    for merchant_id, checkout in made.items():
        ((found, merchant, secret),) = read.joined(
            (CheckoutInvoice, Merchant, MerchantWebhookSecret), checkout.invoice_id
        )
        orm = CheckoutInvoice.objects.get(pk=checkout.pk)
        assert _fields(found) == _fields(orm) and found.pk == orm.pk
        assert merchant.pk == merchant_id and merchant.name == orm.merchant.name
        if merchant_id == with_secret.pk:
            assert secret.secret == MerchantWebhookSecret.objects.get(merchant=with_secret).secret
        else:
            assert secret is None
    (alone,) = Prepared(
        lambda pk: CheckoutInvoice.objects.filter(pk=pk).values_list(*columns(CheckoutInvoice)),
        integers=True,
    ).instances(CheckoutInvoice, made[without.pk].pk)
    assert _fields(alone) == _fields(CheckoutInvoice.objects.get(pk=made[without.pk].pk))
    assert not alone._state.adding  # a loaded row: save() updates it
