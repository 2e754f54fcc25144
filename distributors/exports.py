"""Downloads of fund transactions and their ERP sync results, as .xlsx or .csv.

Every cell goes through config.spreadsheets.spreadsheet_safe (in the resources), so text a clerk
or an upstream wrote, such as "=HYPERLINK(...)", opens as text, in xlsx and csv alike.
"""

from __future__ import annotations

import logging

from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import get_language

from config.file_jobs import counting
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


# --- Large exports: the writers of their file jobs (config.exports) --------------------------

PROGRESS_EVERY_ROWS = 1000


def _write(job, progress, resource, queryset, title: str) -> bytes:
    header, rows = resource_rows(resource, queryset, native=job.file_format != "csv")
    counted = counting(rows, progress, PROGRESS_EVERY_ROWS)
    if job.file_format == "csv":
        return csv_bytes(header=header, rows=counted)
    return xlsx_bytes(title=title, header=header, rows=counted)


def fund_transactions_file(job, progress) -> bytes:
    queryset = (FundTransaction.objects.filter(pk__in=job.options["selected_ids"])
                .select_related("distributor", "created_by", "decided_by").order_by("pk"))
    headers = "zh" if job.language.startswith("zh") else "en"
    return _write(job, progress, FundTransactionExportResource(headers=headers), queryset, "fund transactions")


def erp_syncs_file(job, progress) -> bytes:
    queryset = (ErpSync.objects.filter(fund_transaction__in=job.options["selected_ids"])
                .select_related("fund_transaction__distributor").order_by("pk"))
    return _write(job, progress, ErpSyncResource(), queryset, "ERP syncs")


def large_export_create(*, kind: str, file_format: str, queryset, actor):
    """A file job for the fund transactions selected (or their ERP syncs); returns the FileJob."""
    from config.exports import file_export_create
    from config.models import FileJobKind

    ids = list(queryset.order_by().values_list("pk", flat=True))
    total = len(ids) if kind == FileJobKind.FUND_TRANSACTION_EXPORT else ErpSync.objects.filter(
        fund_transaction__in=ids).count()
    return file_export_create(kind=kind, file_format=file_format, selected_ids=ids, total_rows=total, actor=actor)
