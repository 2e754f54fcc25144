"""Jobs an earlier release queued under a task that is gone still do their work."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob

from orders.models import OrderStatus, RechargeOrder
from orders.services import order_create, orders_place
from providers.models import ProviderCall

# The worker takes jobs on its own connection: what the test writes must be committed.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_jobs_left_over")]

submit_order_jobs = importlib.import_module("orders.migrations.0004_submit_order_jobs_to_submit_orders")


def as_one_order_job(job_id: int, order_id: int, status: str = "todo") -> None:
    """The job as a release before grouped submission deferred it (orders.submit_order, one order)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE procrastinate_jobs SET task_name = 'orders.submit_order', args = jsonb_build_object('order_id', %s),"
            " status = %s WHERE id = %s",
            [order_id, status, job_id],
        )


def run_worker() -> None:
    with app.replace_connector(app.connector.get_worker_connector()) as worker_app:
        worker_app.run_worker(queues=["orders"], wait=False, install_signal_handlers=False, listen_notify=False)


def test_a_waiting_one_order_submission_is_handed_to_the_group_task_and_sends_its_order_once(
    sandbox, clerk, distributor, gift_card_product
):
    order = order_create(distributor=distributor, product=gift_card_product, actor=clerk, quantity=1)
    orders_place(ids=[order.pk], actor=clerk)
    [waiting] = ProcrastinateJob.objects.all()
    as_one_order_job(waiting.id, order.pk)
    finished = app.configure_task("orders.submit_orders", queue="orders").defer(order_ids=[order.pk])
    as_one_order_job(finished, order.pk, status="failed")

    with connection.cursor() as cursor:
        cursor.execute(submit_order_jobs.HAND_OVER_SQL)
    run_worker()

    jobs = {job.id: job for job in ProcrastinateJob.objects.all()}
    assert (jobs[waiting.id].task_name, jobs[waiting.id].args, jobs[waiting.id].status) == (
        "orders.submit_orders", {"order_ids": [order.pk]}, "succeeded")
    assert (jobs[finished].task_name, jobs[finished].args, jobs[finished].status) == (
        "orders.submit_order", {"order_id": order.pk}, "failed")  # a finished job keeps what it ran as
    assert RechargeOrder.objects.get(pk=order.pk).status == OrderStatus.SUCCEEDED
    assert ProviderCall.objects.filter(operation="ecoupon").count() == 1
