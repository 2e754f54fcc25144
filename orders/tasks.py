from __future__ import annotations

import logging

from django.conf import settings
from procrastinate import JobContext, RetryStrategy
from procrastinate.contrib.django import app

from config.jobs import attributed
from providers.exceptions import ProviderNotReached

logger = logging.getLogger(__name__)

# Only a failure to reach the upstream is retried: the order went back to QUEUED, nothing was sent.
RETRY_UNREACHED = RetryStrategy(max_attempts=6, wait=20, retry_exceptions={ProviderNotReached})


@app.task(queue="orders", pass_context=True, name="orders.submit_orders", retry=RETRY_UNREACHED)
@attributed
def submit_orders(context: JobContext, order_ids: list[int]) -> dict[int, str]:
    from orders.services import orders_submit

    return orders_submit(order_ids=order_ids)


@app.task(queue="orders", pass_context=True, name="orders.submit_batch_chunk", retry=RETRY_UNREACHED)
@attributed
def submit_batch_chunk(context: JobContext, batch_id: int, chunk_number: int, order_ids: list[int]) -> int:
    from orders.services import batch_submit_chunk

    return batch_submit_chunk(batch_id=batch_id, chunk_number=chunk_number, order_ids=order_ids)


# Deferred by orders.services.orders_query_defer, with its group's queueing lock and lock.
@app.task(queue="orders", pass_context=True, name="orders.query_orders")
@attributed
def query_orders(context: JobContext, first_order_id: int, last_order_id: int) -> dict[int, str]:
    from orders.services import orders_query_group

    return orders_query_group(first_order_id=first_order_id, last_order_id=last_order_id)


# Jobs deferred for one order each before orders were queried in groups still run.
@app.task(queue="orders", pass_context=True, name="orders.query_order")
@attributed
def query_order(context: JobContext, order_id: int) -> str:
    from orders.services import order_query

    # A job only queries an order still due when it runs: a duplicate, or one deferred before an
    # earlier job's query, finds it claimed and asks nothing.
    return order_query(order_id=order_id, only_if_due=True)


@app.periodic(cron=settings.RECONCILE_CRON, periodic_id="reconcile_orders")
@app.task(queue="orders", pass_context=True, name="orders.reconcile")
@attributed
def reconcile(context: JobContext, timestamp: int) -> int:
    """Turn stale submissions into UNKNOWN, then defer a query job for every group of orders due for one.

    The queries are not made here: each is a job of its own, so every worker takes part, and a
    run that starts while the last one's jobs are still waiting defers none again.
    """
    from orders.services import orders_reconcile_defer, orders_recover_stale_submissions

    recovered = orders_recover_stale_submissions()
    deferred = orders_reconcile_defer()
    if recovered or deferred:
        logger.info("Reconciliation: %d stale submissions recovered, %d order queries deferred", recovered, deferred)
    return deferred


@app.periodic(cron=settings.PRODUCT_SYNC_CRON, periodic_id="sync_bst17_products")
@app.task(queue="maintenance", pass_context=True, name="orders.sync_products")
@attributed
def sync_products(context: JobContext, timestamp: int | None = None) -> str:
    from orders.services import products_sync_bst17, upstream_balance_refresh

    created, updated = products_sync_bst17()
    upstream_balance_refresh()
    return f"{created} created, {updated} updated"


@app.periodic(cron=settings.STALLED_JOBS_CRON, periodic_id="retry_stalled_order_jobs")
@app.task(queue="orders", name="orders.retry_stalled_jobs")
async def retry_stalled_jobs(timestamp: int) -> int:
    """Put back in the queue the order jobs of a worker that died (no heartbeat for JOB_STALLED_SECONDS).

    Without this, a job fetched by a worker killed before it claimed its orders would stay
    "doing" forever and its orders QUEUED. Running such a job again is safe: a submission claims
    its orders first (QUEUED -> SUBMITTING), so whatever the dead worker claimed is not sent again;
    those orders are left to reconciliation (SUBMITTING -> UNKNOWN -> query).
    """
    stalled = await app.job_manager.get_stalled_jobs(
        queue="orders", seconds_since_heartbeat=settings.JOB_STALLED_SECONDS
    )
    for job in stalled:
        logger.warning("Job %s (%s) was left running by a stopped worker: queued again", job.id, job.task_name)
        await app.job_manager.retry_job(job)
    return len(stalled)
