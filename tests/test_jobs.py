"""Background jobs are deferred in the caller's transaction and run by the procrastinate worker."""

from __future__ import annotations

import pytest
from django.db import transaction
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob

from distributors.models import BalanceCheck
from distributors.tasks import verify_ledger
from tests.factories import fund, make_distributor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_jobs_left_over")]


def test_a_rolled_back_transaction_leaves_no_job():
    with pytest.raises(RuntimeError), transaction.atomic():
        verify_ledger.defer(triggered_by="rolled back")
        raise RuntimeError("the change that caused the job failed")

    assert not ProcrastinateJob.objects.filter(task_name="distributors.verify_ledger").exists()


def test_a_committed_transaction_leaves_exactly_its_job():
    with transaction.atomic():
        verify_ledger.defer(triggered_by="committed")

    job = ProcrastinateJob.objects.get(task_name="distributors.verify_ledger")
    assert job.args == {"triggered_by": "committed"}
    assert job.status == "todo"


def test_the_worker_runs_the_ledger_check_and_records_its_result():
    distributor = make_distributor()
    fund(distributor, "12.34")
    verify_ledger.defer(triggered_by="worker test")

    # The worker uses its own psycopg connector, as `manage.py procrastinate worker` does.
    with app.replace_connector(app.connector.get_worker_connector()) as worker_app:
        worker_app.run_worker(queues=["maintenance"], wait=False, install_signal_handlers=False, listen_notify=False)

    check = BalanceCheck.objects.get(triggered_by="worker test")
    assert check.accounts_checked == 3
    assert check.is_clean
    assert ProcrastinateJob.objects.get(task_name="distributors.verify_ledger").status == "succeeded"
