"""`config.prepared.insert`: the rows it writes read back as the ORM's own create writes
them, and a refused row leaves the transaction around it usable."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from checkout.models import CheckoutInvoice
from checkout.services import create_merchant
from config.prepared import insert
from lightning import services as lightning_services
from lightning.models import Invoice


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
