"""A merchant account with no credentials fails (or holds) its own orders, with the variable named; the rest go on.

A client reads its account's settings when a call needs them, inside the handling of that one
order, so the ProviderMisconfigured meets consequence_of there: raised before anything was sent,
nothing was carried out, and that order's hold is released. Before, making the client raised,
outside that handling, and took the whole job (or the reconciliation loop) down with it.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest

from config.provider_settings import provider_accounts
from distributors.models import EntryKind, LedgerEntry
from distributors.services import ledger_balance_check
from orders.models import OrderKind, OrderStatus, Product, RechargeOrder
from orders.services import (
    BatchItemData,
    batch_create,
    batch_place,
    batch_submit_chunk,
    order_create,
    order_query,
    orders_place,
    orders_submit,
)
from providers.models import Provider, ProviderCall

pytestmark = pytest.mark.django_db(databases=["default", "call_log"])


def with_unconfigured_account(environment: dict[str, str], *, copy_of_default: bool = False) -> dict[str, str]:
    """The sandbox's settings plus an account "east" of both order upstreams: empty, or a copy of the default one."""
    extra = {"EXCHANGE_ACCOUNTS": "east", "BST17_ACCOUNTS": "east"}
    if copy_of_default:
        for prefix in ("EXCHANGE_", "BST17_"):
            extra.update({f"{prefix}EAST_{name[len(prefix):]}": value
                          for name, value in environment.items() if name.startswith(prefix) and name not in extra})
    return {**environment, **extra}


def east_product(provider: str, code: str) -> Product:
    kind = OrderKind.DIRECT_CHARGE if provider == Provider.EXCHANGE else OrderKind.GIFT_CARD
    return Product.objects.create(
        provider=provider, code=code, name=f"东区 {code}", kind=kind, merchant_account="east",
        face_value=Decimal("100.00"), cost_price=Decimal("90.00"), sale_price=Decimal("95.00"),
    )


def new_order(distributor, product, clerk) -> RechargeOrder:
    fields = {"target_account": "13800138000"} if product.kind == OrderKind.DIRECT_CHARGE else {}
    return order_create(distributor=distributor, product=product, actor=clerk, **fields)


def released(order: RechargeOrder) -> bool:
    return LedgerEntry.objects.filter(kind=EntryKind.ORDER_RELEASE, cause_id=str(order.pk)).exists()


@pytest.mark.parametrize(("provider", "east_code", "missing"), [
    (Provider.EXCHANGE, "99001", "EXCHANGE_EAST_BASE_URL"),
    (Provider.BST17, "8", "BST17_EAST_BASE_URL"),
], ids=["exchange", "bst17"])
def test_a_job_fails_the_order_of_an_unconfigured_account_and_submits_the_others(
        sandbox, sandbox_environment, settings, clerk, distributor, direct_charge_product, gift_card_product,
        provider, east_code, missing):
    settings.PROVIDERS = provider_accounts(with_unconfigured_account(sandbox_environment))
    configured_product = direct_charge_product if provider == Provider.EXCHANGE else gift_card_product
    # The unconfigured account's order comes first in the job.
    stranded = new_order(distributor, east_product(provider, east_code), clerk)
    fine = new_order(distributor, configured_product, clerk)
    orders_place(ids=[stranded.pk, fine.pk], actor=clerk)

    statuses = orders_submit(order_ids=[stranded.pk, fine.pk])

    stranded.refresh_from_db()
    fine.refresh_from_db()
    assert statuses[stranded.pk] == stranded.status == OrderStatus.FAILED
    assert missing in stranded.status_reason
    assert released(stranded)  # nothing was sent: consequence_of says nothing was carried out
    assert fine.status in (OrderStatus.ACCEPTED, OrderStatus.SUCCEEDED) and not released(fine)
    assert list(ProviderCall.objects.values_list("record_id", flat=True)) == [str(fine.pk)]
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_a_batch_chunk_of_an_unconfigured_account_fails_its_items_instead_of_leaving_them_sending(
        sandbox, sandbox_environment, settings, clerk, distributor):
    settings.PROVIDERS = provider_accounts(with_unconfigured_account(sandbox_environment))
    batch = batch_create(distributor=distributor, product=east_product(Provider.EXCHANGE, "99001"), actor=clerk,
                         items=[BatchItemData("13800138000"), BatchItemData("13800138001")])
    batch_place(batch_id=batch.pk, actor=clerk)
    ids = list(batch.orders.order_by("pk").values_list("pk", flat=True))

    assert batch_submit_chunk(batch_id=batch.pk, chunk_number=1, order_ids=ids) == 2

    items = list(batch.orders.order_by("pk"))
    assert {item.status for item in items} == {OrderStatus.FAILED}
    assert all("EXCHANGE_EAST_BASE_URL" in item.status_reason and released(item) for item in items)
    assert not ProviderCall.objects.exists()
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_an_order_of_an_unconfigured_account_does_not_stop_the_others_being_queried(
        sandbox, sandbox_environment, settings, clerk, distributor, gift_card_product, caplog):
    bst17 = sandbox.vendor("bst17")
    bst17.answer_processing_first = True
    bst17.completion_delay = 0.2
    settings.PROVIDERS = provider_accounts(with_unconfigured_account(sandbox_environment, copy_of_default=True))
    stranded = new_order(distributor, east_product(Provider.BST17, "8"), clerk)
    fine = new_order(distributor, gift_card_product, clerk)
    orders_place(ids=[stranded.pk, fine.pk], actor=clerk)
    assert orders_submit(order_ids=[stranded.pk, fine.pk]) == dict.fromkeys([stranded.pk, fine.pk], OrderStatus.ACCEPTED)
    # The east account's credentials are then taken away; both orders are due for a query.
    settings.PROVIDERS = provider_accounts(with_unconfigured_account(sandbox_environment))
    time.sleep(0.4)

    with caplog.at_level(logging.WARNING, logger="orders.services"):
        queried = [order_query(order_id=order.pk) for order in (stranded, fine)]

    assert queried == [OrderStatus.ACCEPTED, OrderStatus.SUCCEEDED]
    stranded.refresh_from_db()
    # Held, not failed: it was accepted upstream, and is queried again (then a person decides) once configured.
    assert stranded.status == OrderStatus.ACCEPTED and not released(stranded) and stranded.query_attempts == 1
    assert "BST17_EAST_BASE_URL" in caplog.text
    assert ledger_balance_check(triggered_by="test").mismatches == []
