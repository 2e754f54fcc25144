"""Import-export for fund transactions: the one column table, the templates and the exports.

django-import-export gives the field-to-column mapping, the widgets and the export datasets. The
import of a clerk's file does not go through its row-by-row `import_data` (one query and one save
per row): distributors.imports reads the file itself, validates every row in Python and saves them
with bulk_create. The resource's import path is kept working (widgets below) because the bench
compares the two on the same rows.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import TextChoices
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from import_export import fields, resources, widgets

from config.spreadsheets import spreadsheet_safe, xlsx_bytes
from distributors.models import Distributor, ErpSync, FundTransaction, FundTransactionType, PaymentChannel

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


@dataclass(frozen=True)
class Column:
    field: str  # FundTransaction attribute (distributor_code stands for the distributor)
    english: str  # header in the English template
    chinese: str  # header in the Chinese template
    required: bool = False  # the column must be present and its cells filled


# The one mapping table between file columns and fields, in template order. Headers are part of
# the file format, not of the interface: both sets are accepted whatever language the clerk uses.
COLUMNS: tuple[Column, ...] = (
    Column("distributor_code", "Distributor code", "分销商编号", required=True),
    Column("type", "Type", "类型", required=True),
    Column("amount", "Amount", "金额", required=True),
    Column("payment_channel", "Payment channel", "支付方式", required=True),
    Column("payer_account", "Payer account", "付款账号"),
    Column("receiving_account", "Receiving account", "收款账号"),
    Column("voucher_no", "Voucher number", "凭证号"),
    Column("completed_at", "Completion time", "完成时间"),
    Column("remark", "Remark", "备注"),
    Column("external_reference", "External reference", "外部单号"),
)
COLUMNS_BY_FIELD = {column.field: column for column in COLUMNS}
TEMPLATE_LANGUAGES = ("zh", "en")


def _normalize_header(text: str) -> str:
    return " ".join(str(text).replace("\u3000", " ").split()).casefold()


def column_for_header(header: Any) -> Column | None:
    """The column a header cell names, in Chinese or English, ignoring case and stray spaces."""
    wanted = _normalize_header(header)
    for column in COLUMNS:
        if wanted in (_normalize_header(column.english), _normalize_header(column.chinese), column.field):
            return column
    return None


# Chinese names clerks write that the interface labels may not match word for word.
TYPE_ALIASES = {
    "充值": FundTransactionType.RECHARGE,
    "退款": FundTransactionType.REFUND,
    "返利": FundTransactionType.REBATE,
    "扣款": FundTransactionType.DEDUCTION,
    "扣减": FundTransactionType.DEDUCTION,
    "授信增加": FundTransactionType.CREDIT_INCREASE,
    "增加授信": FundTransactionType.CREDIT_INCREASE,
    "授信减少": FundTransactionType.CREDIT_DECREASE,
    "减少授信": FundTransactionType.CREDIT_DECREASE,
}
CHANNEL_ALIASES = {
    "支付宝": PaymentChannel.ALIPAY,
    "微信": PaymentChannel.WECHAT,
    "微信支付": PaymentChannel.WECHAT,
    "银行转账": PaymentChannel.BANK_TRANSFER,
    "转账": PaymentChannel.BANK_TRANSFER,
    "现金": PaymentChannel.CASH,
    "供应链支付": PaymentChannel.SUPPLY_CHAIN,
    "招行直连": PaymentChannel.CMB_DIRECT,
    "招商银行直连": PaymentChannel.CMB_DIRECT,
    "快钱": PaymentChannel.BILL99,
    "财付通": PaymentChannel.TENPAY,
    "快捷支付": PaymentChannel.QUICK_PAY,
    "其他": PaymentChannel.OTHER,
}


_lookups: dict[type[TextChoices], dict[str, str]] = {}


def choice_lookup(choices: type[TextChoices], aliases: dict[str, str]) -> dict[str, str]:
    """Every spelling accepted for a choice: its code, its label in each language, the aliases."""
    if choices not in _lookups:
        _lookups[choices] = _build_lookup(choices, aliases)
    return _lookups[choices]


def _build_lookup(choices: type[TextChoices], aliases: dict[str, str]) -> dict[str, str]:
    lookup = {_normalize_header(code): code for code in choices.values}
    for language in ("en", "zh-hans"):
        with translation.override(language):
            lookup.update({_normalize_header(str(label)): code for code, label in choices.choices})
    lookup.update({_normalize_header(alias): code for alias, code in aliases.items()})
    return lookup


# --- Cell conversions shared by the fast import and the resource widgets --------------------

MAX_AMOUNT = Decimal("99999999999999.99")  # max_digits=16, decimal_places=2
CENT = Decimal("0.01")
DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d",
    "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日",
)


def parse_amount(value: Any) -> Decimal:
    """A positive amount with at most two decimals. Floats come from xlsx number cells.

    repr() of a float is the shortest text that reads back as the same float, i.e. what the cell
    held ("100.1"), so Decimal(repr()) never invents digits; a value Excel computed, such as
    0.30000000000000004, is refused for its decimals rather than silently rounded.
    """
    if isinstance(value, bool):
        raise ValidationError(_("“%(value)s” is not an amount.") % {"value": value})
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (int, Decimal)):
        text = str(value)
    else:
        text = str(value).strip().replace(",", "").replace("，", "").lstrip("¥￥")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValidationError(_("“%(value)s” is not an amount.") % {"value": value}) from None
    if not amount.is_finite():
        raise ValidationError(_("“%(value)s” is not an amount.") % {"value": value})
    if abs(amount) > MAX_AMOUNT:
        raise ValidationError(_("The amount is too large."))
    if amount != amount.quantize(CENT):
        raise ValidationError(_("The amount has more than two decimals: %(value)s.") % {"value": text})
    if amount <= 0:
        raise ValidationError(_("The amount must be greater than zero."))
    return amount.quantize(CENT)


def parse_choice(value: Any, lookup: dict[str, str]) -> str:
    code = lookup.get(_normalize_header(value))
    if code is None:
        raise ValidationError(_("“%(value)s” is not one of the accepted values.") % {"value": value})
    return code


def parse_datetime(value: Any, latest: datetime.datetime | None = None) -> datetime.datetime:
    """A completion time: a date cell, or text such as 2025-01-31 14:05:00, in TIME_ZONE if naive.

    `latest` is the latest time accepted (now, give or take clock skew), computed once per file.
    """
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime.combine(value, datetime.time())
    else:
        text = str(value).strip()
        moment = None
        for pattern in DATETIME_FORMATS:
            try:
                moment = datetime.datetime.strptime(text, pattern)
                break
            except ValueError:
                continue
        if moment is None:
            try:
                moment = datetime.datetime.fromisoformat(text)
            except ValueError:
                raise ValidationError(
                    _("“%(value)s” is not a date and time (write it like 2025-01-31 14:05:00).") % {"value": text}
                ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.get_current_timezone())  # zoneinfo: what make_aware does
    if latest is None:
        latest = timezone.now() + datetime.timedelta(minutes=5)
    if moment > latest:
        raise ValidationError(_("The completion time is in the future."))
    return moment


def parse_text(value: Any, max_length: int) -> str:
    """A text cell. A number typed into a text column (an account number) is kept as its digits."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        value = value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    text = str(value).strip()
    if len(text) > max_length:
        raise ValidationError(_("Longer than %(max)d characters.") % {"max": max_length})
    return text


# --- django-import-export resources ---------------------------------------------------------


class _ParsingWidget(widgets.Widget):
    """A widget whose import is one of the parse functions above, so both paths agree."""

    def __init__(self, parse, render=None):
        super().__init__()
        self.parse, self.render_value = parse, render

    def clean(self, value, row=None, **kwargs):
        if value is None or value == "":
            return None
        return self.parse(value)

    def render(self, value, obj=None, **kwargs):
        if self.render_value is not None:
            return self.render_value(value, obj)
        return value


class SpreadsheetSafeResource(resources.ModelResource):
    """Every exported cell goes through spreadsheet_safe, for xlsx and csv alike."""

    def export_field(self, field, instance, **kwargs):
        return spreadsheet_safe(super().export_field(field, instance, **kwargs))


def _label(choices: type[TextChoices]):
    return lambda code, obj: str(choices(code).label) if code else ""


class FundTransactionResource(SpreadsheetSafeResource):
    """Columns of COLUMNS, with headers in the language asked for ("zh" or "en")."""

    distributor_code = fields.Field(
        attribute="distributor", widget=widgets.ForeignKeyWidget(Distributor, field="code")
    )
    type = fields.Field(
        attribute="type",
        widget=_ParsingWidget(
            lambda v: parse_choice(v, choice_lookup(FundTransactionType, TYPE_ALIASES)), _label(FundTransactionType)
        ),
    )
    amount = fields.Field(attribute="amount", widget=_ParsingWidget(parse_amount, lambda v, o: v))
    payment_channel = fields.Field(
        attribute="payment_channel",
        widget=_ParsingWidget(
            lambda v: parse_choice(v, choice_lookup(PaymentChannel, CHANNEL_ALIASES)), _label(PaymentChannel)
        ),
    )
    completed_at = fields.Field(attribute="completed_at", widget=_ParsingWidget(parse_datetime, lambda v, o: v))

    class Meta:
        model = FundTransaction
        fields = [column.field for column in COLUMNS]
        export_order = fields
        import_id_fields = ["voucher_no"]
        skip_diff = True

    def __init__(self, *, headers: str = "en", created_by=None, **kwargs):
        super().__init__(**kwargs)
        self.created_by = created_by
        for column in COLUMNS:
            self.fields[column.field].column_name = column.chinese if headers == "zh" else column.english

    def before_save_instance(self, instance, row, **kwargs):
        if instance.created_by_id is None:
            instance.created_by = self.created_by


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
