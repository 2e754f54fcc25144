"""Recharge orders through the sandbox: hold, submit, answer, callback, query, manual review."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from distributors.models import Account, EntryKind, LedgerEntry
from distributors.services import ledger_balance_check
from orders.models import CardSecret, OrderStatus, RechargeOrder
from orders.services import (
    order_create,
    order_query,
    order_resolve,
    orders_place,
    orders_recover_stale_submissions,
    orders_submit,
)
from providers.models import ProviderCall
from providers.sandbox.server import Fault

pytestmark = pytest.mark.django_db


def prepaid(distributor) -> Decimal:
    return Account.objects.get(distributor=distributor, kind="prepaid").balance


def placed(order, actor) -> RechargeOrder:
    result = orders_place(ids=[order.pk], actor=actor)
    assert result.refused == {}, result.refused
    order.refresh_from_db()
    return order


def gift_card_order(distributor, product, clerk, quantity=2):
    return order_create(distributor=distributor, product=product, actor=clerk, quantity=quantity)


def test_placing_holds_the_price_and_queues_the_order_in_one_transaction(clerk, distributor, gift_card_product):
    order = gift_card_order(distributor, gift_card_product, clerk)
    assert order.status == OrderStatus.DRAFT and order.price_charged == Decimal("197.00")
    assert len(order.client_reference) == 20

    placed(order, clerk)

    assert order.status == OrderStatus.QUEUED
    assert prepaid(distributor) == Decimal("803.00")
    [hold] = LedgerEntry.objects.filter(kind=EntryKind.ORDER_HOLD)
    assert hold.cause == order and hold.amount == Decimal("-197.00")


def test_an_order_the_distributor_cannot_pay_is_refused_and_nothing_moves(clerk, distributor, gift_card_product):
    order = gift_card_order(distributor, gift_card_product, clerk, quantity=11)

    result = orders_place(ids=[order.pk], actor=clerk)

    assert order.pk in result.refused
    order.refresh_from_db()
    assert order.status == OrderStatus.DRAFT and prepaid(distributor) == Decimal("1000.00")


def test_bad_orders_are_refused_with_the_field(clerk, distributor, direct_charge_product, gift_card_product):
    with pytest.raises(ValidationError) as no_account:
        order_create(distributor=distributor, product=direct_charge_product, actor=clerk)
    with pytest.raises(ValidationError) as no_quantity:
        order_create(distributor=distributor, product=gift_card_product, actor=clerk, quantity=0)
    assert "target_account" in no_account.value.message_dict
    assert "quantity" in no_quantity.value.message_dict


def test_a_gift_card_purchase_stores_the_cards_with_pins_encrypted(sandbox, clerk, distributor, gift_card_product):
    order = placed(gift_card_order(distributor, gift_card_product, clerk), clerk)

    assert orders_submit(order_ids=[order.pk]) == {order.pk: OrderStatus.SUCCEEDED}

    order.refresh_from_db()
    cards = list(order.card_secrets.all())
    assert len(cards) == 2 and order.upstream_order_no
    with connection.cursor() as cursor:
        cursor.execute("SELECT card_number, pin_ciphertext::text FROM orders_cardsecret")
        raw = " ".join(f"{number} {cipher}" for number, cipher in cursor.fetchall())
    stored_calls = " ".join(ProviderCall.objects.values_list("request_body", "response_body").get(
        record_id=str(order.pk)))
    from orders.pins import decrypt_pin

    clear_pins = [decrypt_pin(card.pin_ciphertext) for card in cards]
    for pin in clear_pins:
        assert pin and pin not in raw and pin not in stored_calls
    assert prepaid(distributor) == Decimal("803.00")  # success settles the hold
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_a_rejected_purchase_fails_and_releases_the_hold(sandbox, clerk, distributor, gift_card_product):
    order = placed(gift_card_order(distributor, gift_card_product, clerk), clerk)
    sandbox.add_fault(Fault(vendor="bst17", kind="reject", code="1010", message="余额不足"))

    assert orders_submit(order_ids=[order.pk]) == {order.pk: OrderStatus.FAILED}

    order.refresh_from_db()
    assert "余额不足" in order.status_reason
    assert prepaid(distributor) == Decimal("1000.00")
    release = LedgerEntry.objects.get(kind=EntryKind.ORDER_RELEASE)
    assert release.cause == order and release.amount == Decimal("197.00")
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_a_timeout_after_sending_is_unknown_then_resolved_by_query_never_by_resending(
    sandbox, settings, clerk, distributor, gift_card_product
):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    order = placed(gift_card_order(distributor, gift_card_product, clerk), clerk)
    sandbox.add_fault(Fault(vendor="bst17", kind="timeout", operation="ecoupon", delay_ms=1000))

    assert orders_submit(order_ids=[order.pk]) == {order.pk: OrderStatus.UNKNOWN}
    assert orders_submit(order_ids=[order.pk]) == {}  # a second job claims nothing, so sends nothing
    time.sleep(1.0)  # the sandbox finishes holding its answer
    assert order_query(order_id=order.pk) == OrderStatus.SUCCEEDED

    assert sandbox.vendor("bst17").ecoupon_requests[order.client_reference] == 1
    assert CardSecret.objects.filter(order=order).count() == 2


def test_processing_then_cards_through_the_query(sandbox, clerk, distributor, gift_card_product):
    bst17 = sandbox.vendor("bst17")
    bst17.answer_processing_first = True
    bst17.completion_delay = 0.2
    order = placed(gift_card_order(distributor, gift_card_product, clerk), clerk)

    assert orders_submit(order_ids=[order.pk]) == {order.pk: OrderStatus.ACCEPTED}
    time.sleep(0.4)
    assert order_query(order_id=order.pk) == OrderStatus.SUCCEEDED
    assert CardSecret.objects.filter(order=order).count() == 2


def test_querying_too_often_backs_off_without_counting_against_the_order(
    sandbox, clerk, distributor, gift_card_product
):
    bst17 = sandbox.vendor("bst17")
    bst17.answer_processing_first = True
    bst17.completion_delay = 30
    bst17.min_query_interval = 60
    order = placed(gift_card_order(distributor, gift_card_product, clerk), clerk)
    orders_submit(order_ids=[order.pk])

    order_query(order_id=order.pk)
    first_attempts = RechargeOrder.objects.get(pk=order.pk).query_attempts
    order_query(order_id=order.pk)  # 1017: querying too often

    order.refresh_from_db()
    assert order.status == OrderStatus.ACCEPTED
    assert order.query_attempts == first_attempts
    assert (order.next_query_at - order.submitted_at).total_seconds() > 30


def test_after_the_allowed_queries_a_person_decides_and_the_decision_is_audited(
    sandbox, settings, clerk, supervisor, distributor, gift_card_product
):
    settings.ORDER_QUERY_MAX_ATTEMPTS = 2
    bst17 = sandbox.vendor("bst17")
    bst17.answer_processing_first = True
    bst17.completion_delay = 600
    order = placed(gift_card_order(distributor, gift_card_product, clerk), clerk)
    orders_submit(order_ids=[order.pk])

    statuses = [order_query(order_id=order.pk) for _ in range(3)]

    assert statuses == [OrderStatus.ACCEPTED, OrderStatus.ACCEPTED, OrderStatus.MANUAL_REVIEW]
    with pytest.raises(ValidationError):
        order_resolve(order_id=order.pk, actor=supervisor, succeeded=False, note="")
    assert order_resolve(order_id=order.pk, actor=supervisor, succeeded=False, note="17bst后台无此单")
    order.refresh_from_db()
    assert order.status == OrderStatus.FAILED and order.decided_by == supervisor
    assert prepaid(distributor) == Decimal("1000.00")
    from pghistory.models import Events

    last = Events.objects.tracks(order).order_by("-pgh_id").first()
    assert last.pgh_data["status"] == "failed"


def test_an_unreachable_upstream_puts_the_order_back_in_the_queue(settings, sandbox, clerk, distributor,
                                                                 gift_card_product):
    from config.provider_settings import provider_accounts
    from providers.exceptions import ProviderNotReached
    from tests.conftest import closed_port_url
    from tests.distributors.test_fund_transactions import sandbox_environment_of

    order = placed(gift_card_order(distributor, gift_card_product, clerk), clerk)
    settings.PROVIDERS = provider_accounts({**sandbox_environment_of(settings), "BST17_BASE_URL": closed_port_url()})

    with pytest.raises(ProviderNotReached):
        orders_submit(order_ids=[order.pk])
    order.refresh_from_db()
    assert order.status == OrderStatus.QUEUED and prepaid(distributor) == Decimal("803.00")


def test_an_order_left_submitting_by_a_dead_worker_becomes_unknown(settings, clerk, distributor, gift_card_product):
    settings.ORDER_SUBMIT_STALE_SECONDS = 0
    order = placed(gift_card_order(distributor, gift_card_product, clerk), clerk)
    RechargeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.SUBMITTING,
                                                     submitted_at=order.queued_at)

    assert orders_recover_stale_submissions() == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.UNKNOWN and order.next_query_at is not None


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_submits_of_one_order_make_one_upstream_call(sandbox, clerk, distributor, gift_card_product):
    order = placed(gift_card_order(distributor, gift_card_product, clerk, quantity=1), clerk)
    barrier = threading.Barrier(50)
    results: list[dict[int, str]] = []

    def submit():
        try:
            barrier.wait()
            results.append(orders_submit(order_ids=[order.pk]))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [claimed for claimed in results if claimed] == [{order.pk: OrderStatus.SUCCEEDED}]
    assert sandbox.vendor("bst17").ecoupon_requests[order.client_reference] == 1
    assert ProviderCall.objects.filter(operation="ecoupon").count() == 1
    assert RechargeOrder.objects.get(pk=order.pk).status == OrderStatus.SUCCEEDED
    assert ledger_balance_check(triggered_by="test").mismatches == []


@pytest.mark.django_db(transaction=True)
def test_a_direct_charge_is_accepted_then_finished_by_the_platform_callback(
    sandbox_with_callbacks, clerk, distributor, direct_charge_product
):
    order = order_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                         target_account="13800138000", mobile="13800138000")
    placed(order, clerk)

    assert orders_submit(order_ids=[order.pk]) == {order.pk: OrderStatus.ACCEPTED}
    exchange = sandbox_with_callbacks.vendor("exchange")

    def answered() -> bool:
        # The platform has its answer once the back office has applied the callback and written it
        # to the call log (the order's status changes a moment before that row is written).
        with exchange.lock:
            return any(attempt["bizCode"] == order.client_reference and attempt["delivered"]
                       for attempt in exchange.callback_attempts)

    deadline = time.monotonic() + 10
    while not answered() and time.monotonic() < deadline:
        time.sleep(0.05)

    order.refresh_from_db()
    assert order.status == OrderStatus.SUCCEEDED
    assert order.settlement_price == Decimal("9.50") and order.upstream_order_no.startswith("EX")
    callbacks = ProviderCall.objects.filter(direction="callback", provider="exchange")
    assert callbacks.filter(response_status=200, signature_valid=True).count() >= 1
    assert prepaid(distributor) == Decimal("978.00")


@pytest.mark.django_db(transaction=True)
def test_a_failed_direct_charge_reported_by_callback_releases_the_hold(
    sandbox_with_callbacks, clerk, distributor, direct_charge_product
):
    order = order_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                         target_account="fail-13800138000")
    placed(order, clerk)
    orders_submit(order_ids=[order.pk])
    deadline = time.monotonic() + 10
    while RechargeOrder.objects.get(pk=order.pk).status == OrderStatus.ACCEPTED and time.monotonic() < deadline:
        time.sleep(0.05)

    assert RechargeOrder.objects.get(pk=order.pk).status == OrderStatus.FAILED
    assert prepaid(distributor) == Decimal("1000.00")
    assert ledger_balance_check(triggered_by="test").mismatches == []
