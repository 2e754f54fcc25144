"""What an order holds is what it sends: priced by one rule on every path, for distributors that may order.

Each test is an attack a hostile review found: a draft edited after it was priced, a face value
sent upstream for a fixed-price item, a batch item moved to another product, a suspended
distributor still ordering, an edit racing a placement.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from distributors.models import Account, DistributorStatus, EntryKind, LedgerEntry
from distributors.services import ledger_balance_check
from orders.forms import RechargeOrderForm
from orders.models import OrderBatch, OrderKind, OrderStatus, Product, RechargeOrder
from orders.services import (
    BatchItemData,
    OrderTransitionRefused,
    batch_create,
    batch_place,
    order_create,
    order_update,
    orders_place,
)
from providers.models import Provider
from tests.factories import fund, sign_in

pytestmark = pytest.mark.django_db


def prepaid(distributor) -> Decimal:
    return Account.objects.get(distributor=distributor, kind="prepaid").balance


def held(order) -> Decimal:
    return -sum(e.amount for e in LedgerEntry.objects.filter(kind=EntryKind.ORDER_HOLD, cause_id=str(order.pk)))


@pytest.fixture
def dear_gift_card():
    return Product.objects.create(
        provider=Provider.BST17, code="1000", name="购物卡 1000", kind=OrderKind.GIFT_CARD,
        face_value=Decimal("1000.00"), sale_price=Decimal("1000.00"),
    )


@pytest.fixture
def cheap_gift_card():
    return Product.objects.create(
        provider=Provider.BST17, code="10", name="话费卡 10", kind=OrderKind.GIFT_CARD,
        face_value=Decimal("10.00"), sale_price=Decimal("10.00"),
    )


def order_form_data(order, **changes) -> dict:
    data = {
        "distributor": order.distributor_id, "product": order.product_id, "target_account": order.target_account,
        "mobile": order.mobile, "attach_values": order.attach_values, "quantity": order.quantity,
        "face_value": order.face_value or "", "card_secrets-TOTAL_FORMS": "0", "card_secrets-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    return {**data, **changes}


def test_a_draft_edited_to_a_dearer_product_is_priced_again_and_holds_the_new_price(
        client, clerk, distributor, cheap_gift_card, dear_gift_card):
    fund(distributor, "9000.00")
    order = order_create(distributor=distributor, product=cheap_gift_card, actor=clerk)
    assert order.price_charged == Decimal("10.00")
    sign_in(client, clerk)

    response = client.post(reverse("admin:orders_rechargeorder_change", args=[order.pk]),
                           order_form_data(order, product=dear_gift_card.pk, quantity=5))

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    order.refresh_from_db()
    assert (order.product, order.quantity, order.price_charged) == (dear_gift_card, 5, Decimal("5000.00"))
    orders_place(ids=[order.pk], actor=clerk)
    assert held(order) == Decimal("5000.00")
    assert prepaid(distributor) == Decimal("5000.00")  # 1000 + 9000 - 5000


def test_placing_prices_the_order_again_whatever_its_stored_price_says(clerk, distributor, dear_gift_card):
    fund(distributor, "9000.00")
    order = order_create(distributor=distributor, product=dear_gift_card, actor=clerk, quantity=5)
    # Any write that bypassed the services (a bug, a shell, a bulk update) leaves a stale price behind.
    RechargeOrder.objects.filter(pk=order.pk).update(price_charged=Decimal("10.00"))

    orders_place(ids=[order.pk], actor=clerk)

    order.refresh_from_db()
    assert order.price_charged == Decimal("5000.00") and held(order) == Decimal("5000.00")
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_a_face_value_is_refused_on_a_fixed_price_product_on_every_path(
        client, clerk, distributor, direct_charge_product):
    with pytest.raises(ValidationError) as created:
        order_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                     target_account="13800138000", face_value=Decimal("900.00"))
    order = order_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                         target_account="13800138000")
    with pytest.raises(ValidationError) as updated:
        order_update(order_id=order.pk, face_value=Decimal("900.00"))
    sign_in(client, clerk)
    typed = client.post(reverse("admin:orders_orderbatch_add"), {
        "distributor": distributor.pk, "product": direct_charge_product.pk, "batch_code": "SPEC900",
        "chunk_size": 100, "remark": "", "orders-TOTAL_FORMS": 1, "orders-INITIAL_FORMS": 0,
        "orders-MIN_NUM_FORMS": 0, "orders-MAX_NUM_FORMS": 1000,
        "orders-0-target_account": "13800138001", "orders-0-attach_values": "", "orders-0-face_value": "900.00",
    })

    assert "face_value" in created.value.message_dict and "face_value" in updated.value.message_dict
    assert typed.status_code == 200  # the page again, with the error on the item
    [items] = [inline.formset for inline in typed.context["inline_admin_formsets"]]
    assert "face_value" in items.errors[0]
    assert not OrderBatch.objects.filter(batch_code="SPEC900").exists()
    assert RechargeOrder.objects.get(pk=order.pk).face_value is None


def test_the_products_own_face_value_on_a_fixed_price_product_is_dropped_not_sent(
        clerk, distributor, direct_charge_product):
    order = order_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                         target_account="13800138000", face_value=direct_charge_product.face_value)

    assert order.face_value is None and order.price_charged == direct_charge_product.sale_price


def test_a_suspended_distributor_gets_no_new_order_and_its_drafts_are_not_placed(
        clerk, distributor, gift_card_product, direct_charge_product):
    draft = order_create(distributor=distributor, product=gift_card_product, actor=clerk)
    batch = batch_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                         items=[BatchItemData("13800138000")])
    distributor.status = DistributorStatus.SUSPENDED
    distributor.save()

    with pytest.raises(ValidationError) as new_order:
        order_create(distributor=distributor, product=gift_card_product, actor=clerk)
    placing = orders_place(ids=[draft.pk], actor=clerk)
    with pytest.raises(ValidationError):
        batch_place(batch_id=batch.pk, actor=clerk)

    assert "distributor" in new_order.value.message_dict
    assert list(placing.refused) == [draft.pk] and placing.placed == []
    assert set(RechargeOrder.objects.values_list("status", flat=True)) == {OrderStatus.DRAFT}
    assert prepaid(distributor) == Decimal("1000.00")


def test_an_item_of_a_batch_cannot_be_moved_to_another_product(
        client, clerk, distributor, direct_charge_product, dear_gift_card):
    batch = batch_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                         items=[BatchItemData("13800138000")])
    item = batch.orders.get()
    sign_in(client, clerk)

    page = client.post(reverse("admin:orders_rechargeorder_change", args=[item.pk]),
                       order_form_data(item, product=dear_gift_card.pk))
    with pytest.raises(OrderTransitionRefused):
        order_update(order_id=item.pk, target_account="13900000000")
    # Even an item moved behind the services' back is not placed on the batch's product.
    RechargeOrder.objects.filter(pk=item.pk).update(product=dear_gift_card)
    with pytest.raises(OrderTransitionRefused):
        batch_place(batch_id=batch.pk, actor=clerk)

    assert page.status_code == 403
    assert RechargeOrder.objects.get(pk=item.pk).status == OrderStatus.DRAFT
    assert prepaid(distributor) == Decimal("1000.00")


def test_an_edit_that_lost_the_race_to_a_placement_changes_nothing(clerk, distributor, cheap_gift_card,
                                                                    dear_gift_card):
    order = order_create(distributor=distributor, product=cheap_gift_card, actor=clerk)
    stale = RechargeOrder.objects.get(pk=order.pk)  # what the clerk's change page was built from
    orders_place(ids=[order.pk], actor=clerk)

    form = RechargeOrderForm(order_form_data(stale, product=dear_gift_card.pk, quantity=5), instance=stale)
    with pytest.raises(OrderTransitionRefused):
        order_update(order_id=order.pk, product=dear_gift_card, quantity=5)

    assert not form.is_valid() and form.non_field_errors()
    order.refresh_from_db()
    assert (order.product, order.quantity, order.price_charged, order.status) == (
        cheap_gift_card, 1, Decimal("10.00"), OrderStatus.QUEUED)
