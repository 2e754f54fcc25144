"""Downloads of fund transactions and their ERP sync results, as .xlsx or .csv.

Every cell goes through config.spreadsheets.spreadsheet_safe (in the resources), so text a clerk
or an upstream wrote, such as "=HYPERLINK(...)", opens as text, in xlsx and csv alike.
"""

from __future__ import annotations

import logging

from django.db import models
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import get_language

from config.spreadsheets import xlsx_bytes
from distributors.models import ErpSync, FundTransaction
from distributors.resources import (
    CSV_CONTENT_TYPE,
    XLSX_CONTENT_TYPE,
    ErpSyncResource,
    FundTransactionExportResource,
    csv_bytes,
    export_file,
    resource_rows,
)

logger = logging.getLogger(__name__)


def _response(content: bytes, *, file_format: str, name: str) -> HttpResponse:
    content_type = CSV_CONTENT_TYPE if file_format == "csv" else XLSX_CONTENT_TYPE
    response = HttpResponse(content, content_type=content_type)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{file_format}"'
    return response


def fund_transactions_export(queryset, *, file_format: str) -> HttpResponse:
    queryset = (
        FundTransaction.objects.filter(pk__in=queryset.values("pk"))
        .select_related("distributor", "created_by", "decided_by")
        .order_by("pk")
    )
    # The import columns carry the template's headers in the clerk's language: an export imports again.
    headers = "zh" if (get_language() or "").startswith("zh") else "en"
    resource = FundTransactionExportResource(headers=headers)
    content = export_file(resource, queryset, file_format=file_format, title="fund transactions")
    return _response(content, file_format=file_format, name="fund-transactions")


def erp_syncs_export(fund_transactions, *, file_format: str) -> HttpResponse:
    queryset = (
        ErpSync.objects.filter(fund_transaction__in=fund_transactions.values("pk"))
        .select_related("fund_transaction__distributor")
        .order_by("pk")
    )
    content = export_file(ErpSyncResource(), queryset, file_format=file_format, title="ERP syncs")
    return _response(content, file_format=file_format, name="erp-syncs")


# --- Large exports: a background job with progress ---------------------------------------------

PROGRESS_EVERY_ROWS = 1000


def _queryset_for(kind: str, ids):
    from config.models import ExportKind

    if kind == ExportKind.FUND_TRANSACTIONS:
        return (FundTransaction.objects.filter(pk__in=ids)
                .select_related("distributor", "created_by", "decided_by").order_by("pk"))
    return (ErpSync.objects.filter(fund_transaction__in=ids)
            .select_related("fund_transaction__distributor").order_by("pk"))


def export_job_create(*, kind: str, file_format: str, queryset, actor):
    """Record what to export and queue the job, in one transaction; returns the ExportJob."""
    from django.db import transaction

    from config.models import ExportJob, ExportKind
    from distributors.tasks import run_export

    ids = list(queryset.order_by().values_list("pk", flat=True))
    with transaction.atomic():
        job = ExportJob.objects.create(
            kind=kind, file_format=file_format, selected_ids=ids, created_by=actor,
            language=get_language() or "zh-hans",
            total_rows=len(ids) if kind == ExportKind.FUND_TRANSACTIONS else ErpSync.objects.filter(
                fund_transaction__in=ids).count(),
        )
        run_export.defer(export_job_id=job.pk)
    return job


def export_job_run(*, export_job_id: int) -> str:
    """Write the file in the job's language, counting rows as they go, and keep it on the job."""
    from django.utils import translation

    from config.models import ExportJob, ExportKind, ExportStatus

    job = ExportJob.objects.get(pk=export_job_id)
    if job.status != ExportStatus.QUEUED:
        return job.status
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.RUNNING)
    try:
        with translation.override(job.language):
            if job.kind == ExportKind.FUND_TRANSACTIONS:
                headers = "zh" if job.language.startswith("zh") else "en"
                resource, title = FundTransactionExportResource(headers=headers), "fund transactions"
            else:
                resource, title = ErpSyncResource(), "ERP syncs"
            header, rows = resource_rows(resource, _queryset_for(job.kind, job.selected_ids),
                                         native=job.file_format != "csv")
            counted = _counting(rows, job.pk)
            if job.file_format == "csv":
                content = csv_bytes(header=header, rows=counted)
            else:
                content = xlsx_bytes(title=title, header=header, rows=counted)
    except Exception as err:  # the clerk sees why on the job page; the log has the traceback
        logger.exception("Export %s failed", job.pk)
        ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.FAILED, error=str(err)[:2000],
                                                   finished_at=timezone.now())
        return ExportStatus.FAILED
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportStatus.DONE, content=content, finished_at=timezone.now(),
        processed_rows=models.F("total_rows"),
    )
    return ExportStatus.DONE


def _counting(rows, export_job_id: int):
    from config.models import ExportJob

    written = 0
    for row in rows:
        yield row
        written += 1
        if written % PROGRESS_EVERY_ROWS == 0:
            ExportJob.objects.filter(pk=export_job_id).update(processed_rows=written)
