"""Reconciliation fans out: it only defers query jobs for the due orders, and the workers query.

Given orders left UNKNOWN (the platform carried them out, its answer was unreadable), when the
periodic reconciliation runs it defers one job per group of consecutive orders with any due for
a query (a group of one order, with ORDER_QUERY_GROUP_SIZE = 1), never a second one while one is
waiting, and queries nothing itself; the jobs, run by a worker, finish the orders through the
sandbox. A job for an order settled meanwhile (by a callback, or by another job) asks the
upstream nothing, so a duplicated job cannot apply an answer twice.
"""

from __future__ import annotations

import datetime
import threading
import time
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob

from distributors.models import Account, EntryKind, LedgerEntry
from distributors.services import ledger_balance_check
from orders.models import OrderStatus, RechargeOrder
from orders.services import (
    exchange_callback_apply,
    order_create,
    order_query,
    orders_place,
    orders_reconcile_defer,
    orders_submit,
)
from orders.tasks import query_order, query_orders, reconcile
from providers.exchange.client import ORDER_STATUS_PROCESSING, ExchangeCallback
from providers.models import ProviderCall
from providers.results import Outcome
from providers.sandbox.server import Fault

# The worker takes jobs on its own connection: what the test writes must be committed.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_jobs_left_over")]


@pytest.fixture
def exchange(sandbox):
    platform = sandbox.vendor("exchange")
    platform.callback_delay = 0.0  # the platform finishes a charge at once...
    platform.callback_retry_delays = ()  # ...and its one callback is lost (nothing listens for it)
    return platform


def unknown_orders(exchange, clerk, distributor, product, accounts: list[str]) -> list[int]:
    """Orders the platform carried out but whose answers were unreadable: UNKNOWN, price held, due for a query."""
    ids = [order_create(distributor=distributor, product=product, actor=clerk, target_account=account).pk
           for account in accounts]
    orders_place(ids=ids, actor=clerk)
    exchange.server.add_fault(Fault(vendor="exchange", kind="malformed", operation="VIPCharge", times=len(ids)))
    assert orders_submit(order_ids=ids) == dict.fromkeys(ids, OrderStatus.UNKNOWN)
    references = set(RechargeOrder.objects.filter(pk__in=ids).values_list("client_reference", flat=True))
    deadline = time.monotonic() + 10
    while any(exchange.orders[reference]["status"] == ORDER_STATUS_PROCESSING for reference in references):
        assert time.monotonic() < deadline, "the platform did not finish the charges"
        time.sleep(0.05)
    a_minute_later(ids)
    return ids


def a_minute_later(ids: list[int]) -> None:
    RechargeOrder.objects.filter(pk__in=ids).update(next_query_at=timezone.now())


@pytest.fixture
def one_order_per_job(settings):
    settings.ORDER_QUERY_GROUP_SIZE = 1


def query_jobs() -> list[ProcrastinateJob]:
    return list(ProcrastinateJob.objects.filter(task_name="orders.query_orders").order_by("id"))


def queried_by_jobs() -> list[int]:
    """The orders of the query jobs, each job being one order (ORDER_QUERY_GROUP_SIZE = 1)."""
    jobs = query_jobs()
    assert all(job.args["first_order_id"] == job.args["last_order_id"] for job in jobs)
    return sorted(job.args["first_order_id"] for job in jobs)


def queries_sent() -> int:
    return ProviderCall.objects.filter(operation="info").count()


def run_worker() -> None:
    with app.replace_connector(app.connector.get_worker_connector()) as worker_app:
        worker_app.run_worker(queues=["orders"], wait=False, install_signal_handlers=False, listen_notify=False)


def prepaid(distributor) -> Decimal:
    return Account.objects.get(distributor=distributor, kind="prepaid").balance


def statuses(ids: list[int]) -> list[str]:
    return [RechargeOrder.objects.get(pk=pk).status for pk in ids]


def test_reconciliation_defers_one_query_job_per_due_order_and_queries_nothing_itself(
    one_order_per_job, exchange, clerk, distributor, direct_charge_product
):
    due = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000001", "13800000002"])
    [not_yet_due] = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000003"])
    RechargeOrder.objects.filter(pk=not_yet_due).update(next_query_at=timezone.now() + datetime.timedelta(minutes=1))

    deferred = orders_reconcile_defer()

    assert deferred == 2
    assert queried_by_jobs() == due
    assert all(job.status == "todo" and job.queueing_lock == job.lock == f"orders.query_orders:{job.args['first_order_id']}"
               for job in query_jobs())
    assert queries_sent() == 0
    assert statuses(due) == [OrderStatus.UNKNOWN, OrderStatus.UNKNOWN]


def test_a_run_while_the_last_runs_jobs_wait_defers_none_again(one_order_per_job, exchange, clerk, distributor,
                                                              direct_charge_product):
    ids = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000001", "13800000002"])
    orders_reconcile_defer()
    [late] = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000003"])

    again = orders_reconcile_defer()  # the next minute's run, before any worker took a job

    assert again == 1
    assert queried_by_jobs() == [*ids, late]


def test_reconciliation_pages_through_more_due_orders_than_one_page(one_order_per_job, exchange, clerk, distributor,
                                                                   direct_charge_product):
    ids = unknown_orders(exchange, clerk, distributor, direct_charge_product, [f"1380000000{n}" for n in range(5)])

    assert orders_reconcile_defer(page=2) == 5
    assert queried_by_jobs() == ids


def test_one_job_queries_its_whole_group_even_an_order_due_after_it_was_deferred(
    settings, exchange, clerk, distributor, direct_charge_product
):
    settings.ORDER_QUERY_GROUP_SIZE = 1_000_000_000  # every order of this test in one group, whatever its id
    first = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000001", "13800000002"])
    assert orders_reconcile_defer() == 1
    [job] = query_jobs()
    late = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000003"])
    assert orders_reconcile_defer() == 0  # its group's job is waiting: that job will query it

    run_worker()

    assert job.args["first_order_id"] <= min(first) and max(late) <= job.args["last_order_id"]
    assert statuses([*first, *late]) == [OrderStatus.SUCCEEDED] * 3
    assert queries_sent() == 3
    assert [job.status for job in query_jobs()] == ["succeeded"]


def test_the_deferred_jobs_finish_the_orders_through_the_sandbox(exchange, clerk, distributor, direct_charge_product):
    succeeded, failed = unknown_orders(exchange, clerk, distributor, direct_charge_product,
                                       ["13800000001", "fail-13800000002"])
    assert prepaid(distributor) == Decimal("956.00")  # both held while UNKNOWN
    reconcile.defer(timestamp=int(time.time()))

    run_worker()  # the reconciliation job, then the query jobs it deferred

    assert statuses([succeeded, failed]) == [OrderStatus.SUCCEEDED, OrderStatus.FAILED]
    assert queries_sent() == 2
    assert {job.status for job in ProcrastinateJob.objects.filter(queue_name="orders")} == {"succeeded"}
    assert prepaid(distributor) == Decimal("978.00")  # only the failed one's price released, once
    assert LedgerEntry.objects.filter(kind=EntryKind.ORDER_RELEASE).count() == 1
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_an_order_finished_by_its_callback_after_its_job_was_deferred_is_not_queried(
    exchange, clerk, distributor, direct_charge_product
):
    [order_id] = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000001"])
    orders_reconcile_defer()
    order = RechargeOrder.objects.get(pk=order_id)
    callback = ExchangeCallback(
        order_code="EX1", biz_code=order.client_reference, status=Outcome.SUCCEEDED, upstream_status="SUCCESS",
        settlement_price=Decimal("9.50"), message="充值成功", merchant_account=order.merchant_account,
        nonce="n-1", timestamp_ms=int(time.time() * 1000), raw={},
    )
    exchange_callback_apply(callback=callback, nonce="n-1")

    run_worker()

    assert statuses([order_id]) == [OrderStatus.SUCCEEDED]
    assert queries_sent() == 0
    assert [job.status for job in query_jobs()] == ["succeeded"]
    assert orders_reconcile_defer() == 0  # and it is never due again


def test_duplicated_jobs_for_one_order_query_it_once_and_release_its_price_once(
    exchange, clerk, distributor, direct_charge_product
):
    [order_id] = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["fail-13800000001"])
    for _ in range(3):  # deferred without the queueing lock, as a hostile or mistaken caller could
        query_orders.defer(first_order_id=order_id, last_order_id=order_id)

    run_worker()

    assert statuses([order_id]) == [OrderStatus.FAILED]
    assert queries_sent() == 1
    assert LedgerEntry.objects.filter(kind=EntryKind.ORDER_RELEASE).count() == 1
    assert prepaid(distributor) == Decimal("1000.00")


@pytest.mark.parametrize("defer", [
    pytest.param(lambda order_id: query_orders.defer(first_order_id=order_id, last_order_id=order_id), id="group job"),
    pytest.param(lambda order_id: query_order.defer(order_id=order_id), id="one-order job deferred before groups"),
])
def test_duplicated_jobs_for_an_order_still_processing_upstream_query_it_once(
    defer, exchange, clerk, distributor, direct_charge_product
):
    exchange.callback_delay = 600  # the platform is still charging when the jobs ask
    ids = [order_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                        target_account="13800000001").pk]
    orders_place(ids=ids, actor=clerk)
    exchange.server.add_fault(Fault(vendor="exchange", kind="malformed", operation="VIPCharge"))
    orders_submit(order_ids=ids)
    a_minute_later(ids)
    for _ in range(3):
        defer(ids[0])

    run_worker()

    assert statuses(ids) == [OrderStatus.ACCEPTED]  # the platform said "processing"
    assert queries_sent() == 1
    assert RechargeOrder.objects.get(pk=ids[0]).query_attempts == 1


def test_two_jobs_for_one_order_at_the_same_moment_send_one_query(exchange, clerk, distributor,
                                                                  direct_charge_product):
    [order_id] = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000001"])
    exchange.server.add_fault(Fault(vendor="exchange", kind="latency", operation="info", delay_ms=300))
    results: list[str] = []

    def job() -> None:
        try:
            results.append(order_query(order_id=order_id, only_if_due=True))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert queries_sent() == 1
    assert sorted(results) == sorted([OrderStatus.SUCCEEDED, OrderStatus.UNKNOWN])  # the second found it claimed
    assert statuses([order_id]) == [OrderStatus.SUCCEEDED]


def test_an_order_the_query_cannot_settle_keeps_its_hold_and_waits_for_the_next_query(
    exchange, clerk, distributor, direct_charge_product
):
    [order_id] = unknown_orders(exchange, clerk, distributor, direct_charge_product, ["13800000001"])
    exchange.server.add_fault(Fault(vendor="exchange", kind="http_500", operation="info"))
    orders_reconcile_defer()

    run_worker()

    order = RechargeOrder.objects.get(pk=order_id)
    assert order.status == OrderStatus.UNKNOWN and order.query_attempts == 1
    assert order.next_query_at > timezone.now()  # not due again until the next interval
    assert prepaid(distributor) == Decimal("978.00")
    assert orders_reconcile_defer() == 0


# --- a group's calls made several at once ----------------------------------------------------------


@pytest.fixture
def one_group_of_all(settings):
    settings.ORDER_QUERY_GROUP_SIZE = 1_000_000_000  # every order of the test in one group, whatever its id
    settings.ORDER_QUERY_THREADS = 4


def calls_at_once() -> int:
    """The most order/info calls that were under way at the same moment, from the call log's times."""
    moments = []
    for started, finished in ProviderCall.objects.filter(operation="info").values_list("created_at", "finished_at"):
        moments += [(started, 1), (finished, -1)]
    under_way = most = 0
    for _moment, change in sorted(moments, key=lambda moment: (moment[0], moment[1])):
        under_way += change
        most = max(most, under_way)
    return most


def test_a_group_asked_several_at_once_applies_each_answer_exactly_once(
    one_group_of_all, exchange, clerk, distributor, direct_charge_product
):
    accounts = [f"fail-1380000000{n}" if n % 3 == 0 else f"1380000000{n}" for n in range(12)]
    ids = unknown_orders(exchange, clerk, distributor, direct_charge_product, accounts)
    exchange.server.add_fault(Fault(vendor="exchange", kind="latency", operation="info", times=12, delay_ms=150))
    assert prepaid(distributor) == Decimal("736.00")  # all 12 held
    orders_reconcile_defer()

    run_worker()

    assert statuses(ids) == [OrderStatus.FAILED if account.startswith("fail") else OrderStatus.SUCCEEDED
                             for account in accounts]
    assert calls_at_once() > 1  # the calls did overlap...
    # ...yet every order was asked once, its answer on record, and each failure released its price once.
    assert sorted(ProviderCall.objects.filter(operation="info").values_list("record_id", flat=True)) == sorted(
        str(pk) for pk in ids)
    assert all(ProviderCall.objects.filter(operation="info").values_list("response_body", flat=True))
    assert LedgerEntry.objects.filter(kind=EntryKind.ORDER_RELEASE).count() == 4
    assert prepaid(distributor) == Decimal("824.00")
    assert ledger_balance_check(triggered_by="test").mismatches == []
    assert [job.status for job in query_jobs()] == ["succeeded"]


def test_one_order_whose_answer_cannot_be_applied_leaves_the_rest_of_its_group_finished(
    one_group_of_all, exchange, clerk, distributor, direct_charge_product, monkeypatch
):
    from orders import services

    ids = unknown_orders(exchange, clerk, distributor, direct_charge_product,
                         ["13800000001", "fail-13800000002", "13800000003", "13800000004"])
    broken = ids[1]
    apply_answer = services._apply_answer

    def breaks_on_one(order, *args, **kwargs):
        if order.pk == broken:
            raise RuntimeError("the database refused this one")
        return apply_answer(order, *args, **kwargs)

    monkeypatch.setattr(services, "_apply_answer", breaks_on_one)
    orders_reconcile_defer()

    run_worker()

    assert statuses(ids) == [OrderStatus.SUCCEEDED, OrderStatus.UNKNOWN, OrderStatus.SUCCEEDED, OrderStatus.SUCCEEDED]
    assert [job.status for job in query_jobs()] == ["failed"]  # the failure is not hidden
    assert queries_sent() == 4  # the broken one's answer is on record too
    order = RechargeOrder.objects.get(pk=broken)
    assert order.query_attempts == 1 and order.next_query_at > timezone.now()  # asked again at its next query
    assert prepaid(distributor) == Decimal("912.00")  # its price still held, nothing released


def test_the_threads_that_send_open_no_database_connection(one_group_of_all, exchange, clerk, distributor,
                                                          direct_charge_product, monkeypatch):
    from django.db.backends.base.base import BaseDatabaseWrapper

    ids = unknown_orders(exchange, clerk, distributor, direct_charge_product, [f"1380000000{n}" for n in range(6)])
    opened_in: list[str] = []
    connect = BaseDatabaseWrapper.connect

    def noted(self):
        opened_in.append(threading.current_thread().name)
        return connect(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "connect", noted)
    orders_reconcile_defer()

    run_worker()

    assert statuses(ids) == [OrderStatus.SUCCEEDED] * 6
    assert not [name for name in opened_in if name.startswith("order-query")]


def test_orders_a_job_had_no_time_to_send_get_their_attempt_back_and_are_due_again(
    one_group_of_all, settings, exchange, clerk, distributor, direct_charge_product
):
    from orders.services import orders_query_group

    settings.ORDER_QUERY_THREADS = 1
    ids = unknown_orders(exchange, clerk, distributor, direct_charge_product,
                         ["13800000001", "13800000002", "13800000003"])
    settings.ORDER_QUERY_INTERVAL_SECONDS = 0.4  # the job sends for 0.2 s...
    # ...and its first call takes 0.3 s
    exchange.server.add_fault(Fault(vendor="exchange", kind="latency", operation="info", delay_ms=300))

    result = orders_query_group(first_order_id=min(ids), last_order_id=max(ids))

    assert result == {ids[0]: OrderStatus.SUCCEEDED, ids[1]: OrderStatus.UNKNOWN, ids[2]: OrderStatus.UNKNOWN}
    assert queries_sent() == 1
    for order in RechargeOrder.objects.filter(pk__in=ids[1:]):
        assert order.query_attempts == 0 and order.next_query_at <= timezone.now()
    assert orders_reconcile_defer() == 1  # due again: the next reconciliation asks about them


@pytest.mark.parametrize(("interval", "sending"), [
    (60, 25.0),  # the default: a call may take 3 x 5 s to connect and 20 s to answer, 35 s of the 60
    (600, 300.0),  # never more than half the claim
    (30, 15.0),  # an interval shorter than a call may take: half of it
])
def test_a_query_job_sends_only_while_its_claim_outlasts_any_call_it_makes(settings, interval, sending):
    from orders.services import _query_sending_seconds

    settings.ORDER_QUERY_INTERVAL_SECONDS = interval
    settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT = 5.0, 20.0

    assert _query_sending_seconds() == sending
