"""The import's two jobs run in the procrastinate worker, as `manage.py procrastinate worker` runs them."""

from __future__ import annotations

import pytest
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob

from config.imports import file_import_confirm, file_import_create
from config.models import FileJob, FileJobKind, FileJobStatus
from distributors.models import FundTransaction
from tests.distributors.import_support import row, xlsx
from tests.factories import make_distributor, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_jobs_left_over")]


def run_worker():
    with app.replace_connector(app.connector.get_worker_connector()) as worker_app:
        worker_app.run_worker(queues=["imports"], wait=False, install_signal_handlers=False, listen_notify=False)


def test_the_worker_checks_then_imports_a_file():
    clerk = make_user("worker-clerk")
    make_distributor(code="D001")
    job = file_import_create(kind=FileJobKind.FUND_TRANSACTION_IMPORT,
        actor=clerk, filename="a.xlsx", content=xlsx([row(voucher="W1"), row(voucher="W2", amount=3)]), language="en"
    )
    assert ProcrastinateJob.objects.get(task_name="files.check_import").args == {"file_job_id": job.pk}

    run_worker()
    job.refresh_from_db()
    assert (job.status, job.importable_rows, job.processed_rows) == (FileJobStatus.READY, 2, 2)

    file_import_confirm(file_job_id=job.pk, actor=clerk)
    run_worker()

    job = FileJob.objects.get(pk=job.pk)
    assert (job.status, job.created_count) == (FileJobStatus.DONE, 2)
    assert sorted(FundTransaction.objects.values_list("voucher_no", flat=True)) == ["W1", "W2"]
    event = FundTransaction.pgh_event_models["insert"].objects.first()
    assert event.pgh_context.metadata["source"] == "import"
    assert event.pgh_context.metadata["import_job"] == job.pk
    assert event.pgh_context.metadata["task"] == "files.run_import"
    imports = ProcrastinateJob.objects.filter(task_name__in=["files.check_import", "files.run_import"])
    assert sorted(imports.values_list("status", flat=True)) == ["succeeded", "succeeded"]
