"""Large exports run in the background: the clerk sees progress, may leave, and downloads later."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.urls import reverse
from openpyxl import load_workbook

from config.exports import file_export_run
from config.models import FileJob, FileJobStatus
from config.roles import FINANCE_CLERK
from distributors.fund_transactions import fund_transaction_create
from tests.factories import make_distributor, make_user, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk_client(client):
    clerk = make_user("exporter", FINANCE_CLERK)
    sign_in(client, clerk)
    client.user = clerk
    return client


@pytest.fixture
def transactions(clerk_client):
    distributor = make_distributor()
    return [
        fund_transaction_create(actor=clerk_client.user, distributor=distributor, type="recharge",
                                amount=Decimal(f"{n}.00"), remark="=HYPERLINK(\"http://x\")" if n == 1 else "")
        for n in range(1, 8)
    ]


def test_a_large_export_becomes_a_job_with_progress_then_a_download(settings, clerk_client, transactions):
    settings.EXPORT_INLINE_MAX_ROWS = 3
    url = reverse("admin:distributors_fundtransaction_changelist")

    started = clerk_client.post(url, {"action": "export_xlsx", "_selected_action": [t.pk for t in transactions]})

    job = FileJob.objects.get()
    assert started.status_code == 302 and started["Location"] == reverse("admin:backoffice_filejob_change",
                                                                         args=[job.pk])
    waiting = clerk_client.get(started["Location"]).content.decode()
    assert "<progress" in waiting and 'http-equiv="refresh"' in waiting
    assert job.status == FileJobStatus.QUEUED and job.total_rows == 7

    assert file_export_run(file_job_id=job.pk) == FileJobStatus.DONE

    download = clerk_client.get(reverse("admin:backoffice_filejob_download", args=[job.pk]))
    rows = list(load_workbook(io.BytesIO(download.content)).active.iter_rows(values_only=True))
    assert len(rows) == 8
    assert not any(isinstance(cell, str) and cell.startswith("=") for row in rows for cell in row)
    assert "<progress" not in clerk_client.get(started["Location"]).content.decode()


def test_small_exports_download_at_once(clerk_client, transactions):
    response = clerk_client.post(reverse("admin:distributors_fundtransaction_changelist"),
                                 {"action": "export_csv", "_selected_action": [t.pk for t in transactions]})

    assert response["Content-Type"].startswith("text/csv")
    assert not FileJob.objects.exists()


def test_nobody_else_downloads_a_clerks_export(settings, client, clerk_client, transactions):
    settings.EXPORT_INLINE_MAX_ROWS = 1
    clerk_client.post(reverse("admin:distributors_fundtransaction_changelist"),
                      {"action": "export_csv", "_selected_action": [t.pk for t in transactions]})
    job = FileJob.objects.get()
    file_export_run(file_job_id=job.pk)
    other = make_user("other-clerk", FINANCE_CLERK)
    sign_in(client, other)
    assert client.get(reverse("admin:backoffice_filejob_download", args=[job.pk])).status_code == 403
    assert client.get(reverse("admin:backoffice_filejob_change", args=[job.pk])).status_code == 302
