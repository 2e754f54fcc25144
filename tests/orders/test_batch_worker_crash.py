"""A worker killed in the middle of a batch: nothing is sent twice, nothing is lost, the ledger holds.

This runs the real thing: `manage.py procrastinate worker` as a subprocess on the test database,
the sandbox in this process answering it. The first worker is SIGKILLed while two chunks are on
the wire; a second worker takes over: it queues again the jobs the dead one left running,
reconciliation turns the orders it left SUBMITTING into UNKNOWN and queries them, and every item
ends final. Status callbacks go nowhere here, so only reconciliation can finish the orders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count
from procrastinate.contrib.django.models import ProcrastinateJob

from distributors.models import Account
from distributors.services import ledger_balance_check
from orders.models import OrderStatus, RechargeOrder
from orders.services import BatchItemData, batch_create, batch_place
from providers.sandbox.server import Fault
from tests.conftest import closed_port_url

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(settings.BASE_DIR)
KNOWN_STATES = {OrderStatus.SUCCEEDED, OrderStatus.FAILED, OrderStatus.ACCEPTED, OrderStatus.UNKNOWN,
                OrderStatus.MANUAL_REVIEW}


def clear_job_tables() -> None:
    # Django's flush between transactional tests skips procrastinate's unmanaged tables.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_events; DELETE FROM procrastinate_periodic_defers; "
                       "DELETE FROM procrastinate_jobs; DELETE FROM procrastinate_workers")


@pytest.fixture
def job_tables():
    clear_job_tables()
    yield
    clear_job_tables()


def database_url() -> str:
    """The test database, for another process: the embedded server listens on a unix socket."""
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    if db["HOST"].startswith("/"):
        return f"postgres://{user}{password}@/{db['NAME']}?host={db['HOST']}"
    return f"postgres://{user}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_environment(sandbox_environment: dict) -> dict[str, str]:
    return {
        **os.environ,
        **sandbox_environment,
        "EXCHANGE_CALLBACK_URL": closed_port_url() + "/callbacks/exchange/",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(),
        "DATABASE_OWNER_URL": "",  # a worker never migrates: the application role only
        "SECRET_KEY": settings.SECRET_KEY,
        "CARD_PIN_KEYS": ",".join(settings.CARD_PIN_KEYS),
        "SECURE_SSL_REDIRECT": "0",
        "STATIC_MANIFEST": "0",
        "LOG_LEVEL": "WARNING",
        # Fast reconciliation, so the test takes seconds rather than minutes.
        "ORDER_SUBMIT_STALE_SECONDS": "3",
        "ORDER_QUERY_INTERVAL_SECONDS": "1",
        "RECONCILE_CRON": "* * * * * */1",
        "STALLED_JOBS_CRON": "* * * * * */1",
        "JOB_HEARTBEAT_SECONDS": "0.5",
        "JOB_STALLED_SECONDS": "2",
        "PROVIDER_READ_TIMEOUT": "15",
    }


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "procrastinate", "worker", "--queues", "orders", "--concurrency", "2"],
        cwd=BASE_DIR, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def wait_for(condition, timeout: float, what: str, worker_log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker log:\n{worker_log.read_text()[-4000:]}")
        time.sleep(0.1)


def statuses(batch) -> dict[str, int]:
    return dict(RechargeOrder.objects.filter(batch=batch).values_list("status").annotate(n=Count("id")).order_by())


def test_a_worker_killed_mid_batch_sends_no_item_twice_and_loses_none(
    sandbox, sandbox_environment, job_tables, tmp_path, clerk, distributor, direct_charge_product
):
    exchange = sandbox.vendor("exchange")
    exchange.callback_delay = 0.1
    exchange.callback_retry_delays = ()
    accounts = [f"fail-1390000{n:04d}" if n % 7 == 3 else f"1380000{n:04d}" for n in range(24)]
    batch = batch_create(distributor=distributor, product=direct_charge_product, actor=clerk, chunk_size=4,
                         items=[BatchItemData(account) for account in accounts])
    assert batch_place(batch_id=batch.pk, actor=clerk) == 24  # six chunk jobs, committed
    # The first two chunks to reach the sandbox are held there for 4 s: in flight when the worker dies.
    sandbox.add_fault(Fault(vendor="exchange", kind="latency", operation="batch", delay_ms=4000, times=2))
    env = worker_environment(sandbox_environment)
    log = tmp_path / "worker.log"

    first = start_worker(env, log)
    try:
        wait_for(lambda: not sandbox.faults, 60, "two chunks on the wire", log)
        submitting = RechargeOrder.objects.filter(batch=batch, status=OrderStatus.SUBMITTING).count()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert submitting == 8, statuses(batch)

    second = start_worker(env, log)
    try:
        wait_for(
            lambda: set(statuses(batch)) <= {OrderStatus.SUCCEEDED, OrderStatus.FAILED}, 90,
            "every item to be final", log,
        )
        wait_for(
            lambda: not ProcrastinateJob.objects.filter(task_name="orders.submit_batch_chunk")
            .exclude(status="succeeded").exists(), 30, "the dead worker's jobs to be run again", log,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(20)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait(10)

    items = list(RechargeOrder.objects.filter(batch=batch).values_list("client_reference", "target_account", "status"))
    # Sent at most once, and none lost: each bizCode reached the platform exactly once.
    assert {reference: exchange.charge_requests[reference] for reference, _a, _s in items} == {
        reference: 1 for reference, _a, _s in items}
    assert all(status in KNOWN_STATES for _r, _a, status in items)
    assert {account: status for _r, account, status in items} == {
        account: OrderStatus.FAILED if account.startswith("fail") else OrderStatus.SUCCEEDED for account in accounts}
    # The eight items the dead worker left SUBMITTING went through UNKNOWN and a query.
    assert RechargeOrder.objects.filter(batch=batch, query_attempts__gt=0).count() >= 8
    succeeded = sum(1 for account in accounts if not account.startswith("fail"))
    prepaid = Account.objects.get(distributor=distributor, kind="prepaid").balance
    assert prepaid == Decimal("1000.00") - succeeded * Decimal("22.00")
    assert ledger_balance_check(triggered_by="test").mismatches == []
