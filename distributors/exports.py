"""Downloads of fund transactions and their ERP sync results, as .xlsx or .csv.

Every cell goes through config.spreadsheets.spreadsheet_safe (in the resources), so text a clerk
or an upstream wrote, such as "=HYPERLINK(...)", opens as text, in xlsx and csv alike.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import get_language

from distributors.models import ErpSync, FundTransaction
from distributors.resources import (
    CSV_CONTENT_TYPE,
    XLSX_CONTENT_TYPE,
    ErpSyncResource,
    FundTransactionExportResource,
    export_file,
)


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
