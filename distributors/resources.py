"""Exports of fund transactions and their ERP syncs, and the import template, with django-import-export.

django-import-export gives the field-to-column mapping and streams the rows. Imports do not go
through it (its row-by-row import costs a query and a save per row): they go through the import
pipeline (config.imports, distributors.imports), whose columns the export repeats, so an export
can be corrected and imported again.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import TextChoices
from django.utils.translation import gettext as _
from import_export import fields, resources, widgets

from config.spreadsheets import spreadsheet_safe, xlsx_bytes
from distributors.imports import COLUMNS
from distributors.models import Distributor, ErpSync, FundTransaction, FundTransactionType, PaymentChannel

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


# --- django-import-export resources ---------------------------------------------------------


class _LabelWidget(widgets.Widget):
    """A choice written as its label in the export's language."""

    def __init__(self, choices: type[TextChoices]):
        super().__init__()
        self.choices = choices

    def render(self, value, obj=None, **kwargs):
        return str(self.choices(value).label) if value else ""


class _ValueWidget(widgets.Widget):
    """The value itself (a Decimal, a datetime), for the file writer to format as its cell."""

    def render(self, value, obj=None, **kwargs):
        return value


class SpreadsheetSafeResource(resources.ModelResource):
    """Every exported cell goes through spreadsheet_safe, for xlsx and csv alike."""

    def export_field(self, field, instance, **kwargs):
        return spreadsheet_safe(super().export_field(field, instance, **kwargs))


class FundTransactionResource(SpreadsheetSafeResource):
    """The import template's columns (distributors.imports.COLUMNS), headers in "zh" or "en"."""

    distributor_code = fields.Field(
        attribute="distributor", widget=widgets.ForeignKeyWidget(Distributor, field="code")
    )
    type = fields.Field(attribute="type", widget=_LabelWidget(FundTransactionType))
    amount = fields.Field(attribute="amount", widget=_ValueWidget())
    payment_channel = fields.Field(attribute="payment_channel", widget=_LabelWidget(PaymentChannel))
    completed_at = fields.Field(attribute="completed_at", widget=_ValueWidget())

    class Meta:
        model = FundTransaction
        fields = [column.field for column in COLUMNS]
        export_order = fields

    def __init__(self, *, headers: str = "en", **kwargs):
        super().__init__(**kwargs)
        for column in COLUMNS:
            self.fields[column.field].column_name = column.chinese if headers == "zh" else column.english


class FundTransactionExportResource(FundTransactionResource):
    """The import columns first (so an export can be corrected and imported elsewhere), then the state."""

    id = fields.Field(attribute="id", column_name="ID")
    status = fields.Field(attribute="status")
    created_by = fields.Field(attribute="created_by__username")
    created_at = fields.Field(attribute="created_at", widget=widgets.DateTimeWidget())
    decided_by = fields.Field(attribute="decided_by__username")
    decided_at = fields.Field(attribute="decided_at", widget=widgets.DateTimeWidget())

    class Meta(FundTransactionResource.Meta):
        fields = ["id", *(column.field for column in COLUMNS), "status", "created_by", "created_at",
                  "decided_by", "decided_at"]
        export_order = fields

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        headers = {
            "status": _("Status"), "created_by": _("Created by"), "created_at": _("Created at"),
            "decided_by": _("Approved or rejected by"), "decided_at": _("Approved or rejected at"),
        }
        for name, header in headers.items():
            self.fields[name].column_name = header

    def dehydrate_status(self, fund_transaction: FundTransaction) -> str:
        return str(fund_transaction.get_status_display())


class ErpSyncResource(SpreadsheetSafeResource):
    fund_transaction = fields.Field(attribute="fund_transaction_id")
    distributor_code = fields.Field(attribute="fund_transaction__distributor__code")
    voucher_no = fields.Field(attribute="fund_transaction__voucher_no")
    amount = fields.Field(attribute="fund_transaction__amount")

    class Meta:
        model = ErpSync
        fields = [
            "id", "fund_transaction", "distributor_code", "voucher_no", "amount", "target", "merchant_account",
            "client_reference", "status", "attempts", "upstream_reference", "last_error", "review_note",
            "created_at", "updated_at",
        ]
        export_order = fields

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        headers = {
            "id": "ID", "fund_transaction": _("Fund transaction"), "distributor_code": _("Distributor code"),
            "voucher_no": _("Voucher number"), "amount": _("Amount"), "target": _("ERP system"),
            "merchant_account": _("Merchant account"), "client_reference": _("Client reference"),
            "status": _("Status"), "attempts": _("Attempts"), "upstream_reference": _("Upstream reference"),
            "last_error": _("Last error"), "review_note": _("Review note"), "created_at": _("Created at"),
            "updated_at": _("Updated at"),
        }
        for name, header in headers.items():
            self.fields[name].column_name = header

    def dehydrate_target(self, sync: ErpSync) -> str:
        return str(sync.get_target_display())

    def dehydrate_status(self, sync: ErpSync) -> str:
        return str(sync.get_status_display())


# --- Files ----------------------------------------------------------------------------------


def resource_rows(
    resource: resources.ModelResource, queryset, *, native: bool
) -> tuple[list[str], Iterable[Sequence[Any]]]:
    """Header and rows of an export, streamed from the database (no tablib Dataset in memory).

    `native` keeps numbers and dates as such (for xlsx) instead of the widgets' text.
    """
    header = resource.get_export_headers()
    rows = (resource.export_resource(obj, force_native_type=native) for obj in resource.iter_queryset(queryset))
    return header, rows


def csv_bytes(*, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 with a BOM (Excel in China opens it as UTF-8 only with one), every cell spreadsheet-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([spreadsheet_safe(str(h)) for h in header])
    for row in rows:
        writer.writerow([_csv_cell(spreadsheet_safe(value)) for value in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else value


def export_file(resource: resources.ModelResource, queryset, *, file_format: str, title: str) -> bytes:
    header, rows = resource_rows(resource, queryset, native=file_format != "csv")
    if file_format == "csv":
        return csv_bytes(header=header, rows=rows)
    return xlsx_bytes(title=title, header=header, rows=rows)


def template_bytes(*, headers: str) -> bytes:
    """An import template: the header row only (an example row left in by mistake would be imported)."""
    resource = FundTransactionResource(headers=headers)
    title = "资金流水" if headers == "zh" else "fund transactions"
    return xlsx_bytes(title=title, header=resource.get_export_headers(), rows=[])
