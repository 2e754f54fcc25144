"""Orders placed together are submitted by one job per group, each order still its own call."""

from __future__ import annotations

from decimal import Decimal

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from distributors.services import ledger_balance_check
from orders.models import OrderKind, OrderStatus, Product, RechargeOrder
from orders.services import order_create, orders_place, orders_submit
from providers.models import Provider, ProviderCall

pytestmark = pytest.mark.django_db


def direct_charges(distributor, product, clerk, count: int) -> list[int]:
    return [
        order_create(distributor=distributor, product=product, actor=clerk, target_account=f"1380013{n:04d}").pk
        for n in range(count)
    ]


def submission_jobs() -> list[list[int]]:
    return [job.args["order_ids"] for job in ProcrastinateJob.objects.filter(task_name="orders.submit_orders")
            .order_by("id")]


def test_orders_placed_together_are_queued_in_groups_each_with_its_own_job(settings, clerk, distributor,
                                                                          direct_charge_product):
    settings.ORDER_SUBMIT_CHUNK_SIZE = 2
    ids = direct_charges(distributor, direct_charge_product, clerk, 5)

    result = orders_place(ids=ids, actor=clerk)

    assert result.placed == ids and result.refused == {}
    assert submission_jobs() == [ids[0:2], ids[2:4], ids[4:5]]
    assert set(RechargeOrder.objects.values_list("status", flat=True)) == {OrderStatus.QUEUED}


def test_an_order_refused_in_a_group_is_left_out_of_its_job_and_the_others_go_ahead(settings, clerk, distributor,
                                                                                   direct_charge_product):
    settings.ORDER_SUBMIT_CHUNK_SIZE = 3
    dear = Product.objects.create(provider=Provider.EXCHANGE, code="87199", name="年卡", kind=OrderKind.DIRECT_CHARGE,
                                  sale_price=Decimal("5000.00"))  # more than the balance
    ids = direct_charges(distributor, direct_charge_product, clerk, 3)
    RechargeOrder.objects.filter(pk=ids[1]).update(product=dear)

    result = orders_place(ids=ids, actor=clerk)

    assert result.placed == [ids[0], ids[2]] and list(result.refused) == [ids[1]]
    assert submission_jobs() == [[ids[0], ids[2]]]
    assert RechargeOrder.objects.get(pk=ids[1]).status == OrderStatus.DRAFT
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_a_group_sends_each_order_once_with_its_own_call_and_status(sandbox, clerk, distributor,
                                                                    direct_charge_product):
    ids = direct_charges(distributor, direct_charge_product, clerk, 3)
    orders_place(ids=ids, actor=clerk)

    statuses = orders_submit(order_ids=ids)
    again = orders_submit(order_ids=ids)  # the same job run twice claims nothing the second time

    assert statuses == dict.fromkeys(ids, OrderStatus.ACCEPTED) and again == {}
    exchange = sandbox.vendor("exchange")
    references = RechargeOrder.objects.filter(pk__in=ids).values_list("client_reference", flat=True)
    assert [exchange.charge_requests[reference] for reference in references] == [1, 1, 1]
    calls = ProviderCall.objects.filter(operation="VIPCharge").order_by("id")
    assert [call.record_id for call in calls] == [str(pk) for pk in ids]
    assert all(call.created_at <= call.finished_at and call.outcome == "accepted" for call in calls)


def test_orders_a_job_had_no_time_left_to_send_go_back_to_the_queue_with_a_job_of_their_own(
    settings, sandbox, clerk, distributor, direct_charge_product
):
    settings.ORDER_SUBMIT_STALE_SECONDS = 0  # the time is up as soon as one order is sent
    ids = direct_charges(distributor, direct_charge_product, clerk, 3)
    orders_place(ids=ids, actor=clerk)

    statuses = orders_submit(order_ids=ids)

    assert statuses == {ids[0]: OrderStatus.ACCEPTED}
    assert [RechargeOrder.objects.get(pk=pk).status for pk in ids[1:]] == [OrderStatus.QUEUED] * 2
    assert submission_jobs()[-1] == ids[1:]
    assert ProviderCall.objects.filter(operation="VIPCharge").count() == 1
    assert orders_submit(order_ids=ids[1:]) == {ids[1]: OrderStatus.ACCEPTED}  # one more each time


def test_an_unreachable_upstream_puts_the_rest_of_the_group_back_in_the_queue(settings, sandbox, clerk, distributor,
                                                                              direct_charge_product):
    from config.provider_settings import provider_accounts
    from providers.exceptions import ProviderNotReached
    from tests.conftest import closed_port_url
    from tests.distributors.test_fund_transactions import sandbox_environment_of

    ids = direct_charges(distributor, direct_charge_product, clerk, 3)
    orders_place(ids=ids, actor=clerk)
    settings.PROVIDERS = provider_accounts({**sandbox_environment_of(settings), "EXCHANGE_BASE_URL": closed_port_url()})

    with pytest.raises(ProviderNotReached):
        orders_submit(order_ids=ids)

    assert set(RechargeOrder.objects.filter(pk__in=ids).values_list("status", flat=True)) == {OrderStatus.QUEUED}
    assert ledger_balance_check(triggered_by="test").mismatches == []


def updates_of_orders(queries) -> list[str]:
    return [query["sql"] for query in queries if 'UPDATE "orders_rechargeorder"' in query["sql"]]


def test_the_acceptances_of_a_group_are_written_by_one_statement_each_with_its_own_answer(
    sandbox, clerk, distributor, direct_charge_product
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pghistory.models import Events

    ids = direct_charges(distributor, direct_charge_product, clerk, 3)
    orders_place(ids=ids, actor=clerk)

    with CaptureQueriesContext(connection) as queries:
        orders_submit(order_ids=ids)

    assert len(updates_of_orders(queries.captured_queries)) == 2  # the claim, then the acceptances
    orders = list(RechargeOrder.objects.filter(pk__in=ids).order_by("pk"))
    assert [order.status for order in orders] == [OrderStatus.ACCEPTED] * 3
    assert len({order.upstream_order_no for order in orders}) == 3 and all(o.upstream_order_no for o in orders)
    assert all(order.settlement_price == Decimal("9.50") and order.next_query_at for order in orders)
    for order in orders:
        moves = [event.pgh_data["status"] for event in Events.objects.tracks(order).order_by("pgh_id")]
        assert moves[-2:] == [OrderStatus.SUBMITTING, OrderStatus.ACCEPTED]


def test_an_order_settled_by_its_callback_before_the_acceptances_are_written_keeps_its_final_status(
    monkeypatch, sandbox, clerk, distributor, direct_charge_product
):
    from orders import services

    ids = direct_charges(distributor, direct_charge_product, clerk, 2)
    orders_place(ids=ids, actor=clerk)
    write = services._Acceptances.write

    def callback_first(acceptances):
        services._move_without_money({"pk": ids[0]}, OrderStatus.SUCCEEDED, from_statuses=services.CALLBACK_FROM_STATUSES)
        write(acceptances)

    monkeypatch.setattr(services._Acceptances, "write", callback_first)

    orders_submit(order_ids=ids)

    assert RechargeOrder.objects.get(pk=ids[0]).status == OrderStatus.SUCCEEDED
    assert RechargeOrder.objects.get(pk=ids[1]).status == OrderStatus.ACCEPTED


def test_a_group_that_stops_half_way_still_writes_the_acceptances_it_had(monkeypatch, sandbox, clerk, distributor,
                                                                         direct_charge_product):
    from orders import services
    from providers.exceptions import ProviderNotReached

    ids = direct_charges(distributor, direct_charge_product, clerk, 3)
    orders_place(ids=ids, actor=clerk)
    submit_one = services._submit_one

    def unreachable_for_the_last(order, client, accepted):
        if order.pk == ids[2]:
            raise ProviderNotReached("connection refused", provider="exchange", operation="VIPCharge")
        return submit_one(order, client, accepted)

    monkeypatch.setattr(services, "_submit_one", unreachable_for_the_last)

    with pytest.raises(ProviderNotReached):
        orders_submit(order_ids=ids)

    statuses = dict(RechargeOrder.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses == {ids[0]: OrderStatus.ACCEPTED, ids[1]: OrderStatus.ACCEPTED, ids[2]: OrderStatus.QUEUED}
    assert ProviderCall.objects.filter(operation="VIPCharge").count() == 2
