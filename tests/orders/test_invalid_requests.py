"""An order the upstream would refuse on one of its fields fails alone, before anything is sent.

The request to the redemption platform or 17bst is built, and so checked, inside the handling of
that one order, as an ERP sync's is: the InvalidRequest names the field, nothing was carried out
(consequence_of), so the order fails and its hold is released, and the other orders of the job,
or of the batch chunk, go on without it.
"""

from __future__ import annotations

import json

import pytest

from distributors.models import EntryKind, LedgerEntry
from distributors.services import ledger_balance_check
from orders.models import OrderStatus, Product, RechargeOrder
from orders.services import (
    BatchItemData,
    batch_create,
    batch_item_request,
    batch_place,
    batch_submit_chunk,
    ecoupon_request,
    order_create,
    orders_place,
    orders_submit,
    vip_charge_request,
)
from providers.exceptions import InvalidRequest
from providers.models import ProviderCall

pytestmark = pytest.mark.django_db(databases=["default", "call_log"])


def released(order: RechargeOrder) -> bool:
    return LedgerEntry.objects.filter(kind=EntryKind.ORDER_RELEASE, cause_id=str(order.pk)).exists()


def refusal(build) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        build()
    return caught.value


def reloaded(order: RechargeOrder) -> RechargeOrder:
    return RechargeOrder.objects.select_related("product").get(pk=order.pk)


def a_direct_charge_that_loses_its_account(distributor, clerk, product):
    order = order_create(distributor=distributor, product=product, actor=clerk, target_account="13800138000")

    def once_placed() -> InvalidRequest:
        # A write that went round the services (a shell, a bulk update): the request is built,
        # and so checked, again when it is sent.
        RechargeOrder.objects.filter(pk=order.pk).update(target_account="")
        return refusal(lambda: vip_charge_request(reloaded(order)))

    return order, once_placed


def a_gift_card_of_a_product_code_17bst_cannot_take(distributor, clerk, product):
    # 17bst's productCode is a number on the wire; the product table takes any code.
    odd = Product.objects.create(
        provider=product.provider, code="GC-12", name="购物卡 GC-12", kind=product.kind, face_value=product.face_value,
        cost_price=product.cost_price, sale_price=product.sale_price,
    )
    order = order_create(distributor=distributor, product=odd, actor=clerk)
    return order, lambda: refusal(lambda: ecoupon_request(reloaded(order), receive_url=""))


@pytest.mark.parametrize(("bad_order", "field"), [
    (a_direct_charge_that_loses_its_account, "account"),
    (a_gift_card_of_a_product_code_17bst_cannot_take, "product_code"),
], ids=["exchange", "bst17"])
def test_a_job_fails_the_order_with_a_bad_field_and_submits_the_others(
        sandbox, clerk, distributor, direct_charge_product, gift_card_product, bad_order, field):
    product = direct_charge_product if field == "account" else gift_card_product
    bad, once_placed = bad_order(distributor, clerk, product)
    fields = {"target_account": "13800138001"} if product == direct_charge_product else {}
    fine = order_create(distributor=distributor, product=product, actor=clerk, **fields)
    assert orders_place(ids=[bad.pk, fine.pk], actor=clerk).refused == {}
    refused = once_placed()

    statuses = orders_submit(order_ids=[bad.pk, fine.pk])

    bad.refresh_from_db()
    fine.refresh_from_db()
    assert refused.field == field
    assert statuses[bad.pk] == bad.status == OrderStatus.FAILED
    assert bad.status_reason == str(refused)
    assert released(bad)  # nothing was sent: the hold goes back
    assert fine.status in (OrderStatus.ACCEPTED, OrderStatus.SUCCEEDED) and not released(fine)
    assert list(ProviderCall.objects.values_list("record_id", flat=True)) == [str(fine.pk)]
    assert ledger_balance_check(triggered_by="test").mismatches == []


def placed_batch(distributor, product, clerk, accounts: list[str]) -> list[RechargeOrder]:
    batch = batch_create(distributor=distributor, product=product, actor=clerk,
                         items=[BatchItemData(account) for account in accounts])
    batch_place(batch_id=batch.pk, actor=clerk)
    return list(batch.orders.order_by("pk"))


def test_a_batch_item_with_a_bad_field_fails_alone_and_the_chunk_goes_without_it(
        sandbox, clerk, distributor, direct_charge_product):
    first, bad, last = placed_batch(distributor, direct_charge_product, clerk, ["13800138000", "13800138001", "13800138002"])
    RechargeOrder.objects.filter(pk=bad.pk).update(target_account="")  # round the services, as above
    bad.refresh_from_db()
    refused = refusal(lambda: batch_item_request(bad))

    assert batch_submit_chunk(batch_id=first.batch_id, chunk_number=1, order_ids=[first.pk, bad.pk, last.pk]) == 3

    for order in (first, bad, last):
        order.refresh_from_db()
    assert refused.field == "account"
    assert bad.status == OrderStatus.FAILED and bad.status_reason == str(refused) and released(bad)
    assert {first.status, last.status} <= {OrderStatus.ACCEPTED, OrderStatus.SUCCEEDED}
    assert not released(first) and not released(last)
    call = ProviderCall.objects.get()
    sent = [row["bizCode"] for row in json.loads(call.request_body)["itemList"]]
    assert sent == [first.client_reference, last.client_reference]
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_a_batch_chunk_of_bad_items_only_sends_nothing(sandbox, clerk, distributor, direct_charge_product):
    items = placed_batch(distributor, direct_charge_product, clerk, ["13800138000", "13800138001"])
    RechargeOrder.objects.filter(pk__in=[item.pk for item in items]).update(target_account=" ")

    assert batch_submit_chunk(batch_id=items[0].batch_id, chunk_number=1, order_ids=[item.pk for item in items]) == 2

    for item in items:
        item.refresh_from_db()
        assert item.status == OrderStatus.FAILED and released(item)
    assert not ProviderCall.objects.exists()
    assert ledger_balance_check(triggered_by="test").mismatches == []
