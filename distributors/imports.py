"""Importing fund transactions from a clerk's .xlsx or .csv file, through the one import pipeline.

config.imports runs every import the same way (upload, check, confirm, save all or none, as
background jobs on a FileJob); this is what is particular to fund transactions: the columns,
the cells' conversions and the checks against the database.

Idempotency: each row has an external reference, the file's own (column 外部单号 / External
reference) or, when absent, a SHA-256 digest of the row's business content. FundTransaction has a
unique constraint on it, so a row whose reference is already recorded is reported as "already
imported" and skipped; importing the same file twice creates nothing. Voucher numbers are unique
too: one recorded under another reference is an error, not a skip.

Formulas are refused, never evaluated (config.spreadsheet_import): the cached result Excel stored
next to a formula is never read.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from config.file_jobs import Progress
from config.imports import CheckedFile, ParsedFile, SpreadsheetImport
from config.models import FileJob, FileJobKind
from config.spreadsheet_import import Column, choice_lookup, parse_amount, parse_choice, parse_datetime, parse_text
from distributors.models import (
    Distributor,
    DistributorStatus,
    FundTransaction,
    FundTransactionStatus,
    FundTransactionType,
    PaymentChannel,
)

BATCH_SIZE = 2000
TEXT_FIELDS = ("payer_account", "receiving_account", "voucher_no", "remark", "external_reference")

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
TEMPLATE_LANGUAGES = ("zh", "en")


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


@dataclass(slots=True)
class ParsedRow:
    row: int
    distributor_code: str
    type: str
    amount: Decimal
    payment_channel: str
    payer_account: str
    receiving_account: str
    voucher_no: str
    completed_at: datetime.datetime | None
    remark: str
    external_reference: str
    reference_given: bool = False


def row_digest(row: ParsedRow) -> str:
    """A stable reference for a row without one: the same business content gives the same digest."""
    completed = row.completed_at.astimezone(datetime.UTC).isoformat() if row.completed_at else ""
    parts = [row.distributor_code, row.type, f"{row.amount:.2f}", row.payment_channel, row.payer_account,
             row.receiving_account, row.voucher_no, completed, row.remark]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class FundTransactionImport(SpreadsheetImport):
    kind = FileJobKind.FUND_TRANSACTION_IMPORT
    columns = COLUMNS
    row_class = ParsedRow
    # Anyone who may add fund transactions may import them: an import records drafts only,
    # which still go through submission and approval.
    permission = "distributors.add_fundtransaction"
    # Imports run one at a time, so two files sharing a voucher number give one clear
    # "already recorded" error rather than a unique-constraint failure.
    lock_key = 0x46_54_49_4D  # "FTIM"

    def converters(self, job: FileJob) -> dict[str, Callable[[Any], Any]]:
        type_lookup = choice_lookup(FundTransactionType, TYPE_ALIASES)
        channel_lookup = choice_lookup(PaymentChannel, CHANNEL_ALIASES)
        latest = timezone.now() + datetime.timedelta(minutes=5)
        zone = timezone.get_current_timezone()

        def completed_at(value: Any) -> datetime.datetime:
            if isinstance(value, datetime.datetime) and value.tzinfo is None:  # a date cell: the common case
                value = value.replace(tzinfo=zone)
            return parse_datetime(value, latest)

        return {
            "distributor_code": functools.partial(parse_text, max_length=Distributor._meta.get_field("code").max_length),
            "type": functools.partial(parse_choice, lookup=type_lookup),
            "amount": parse_amount,
            "payment_channel": functools.partial(parse_choice, lookup=channel_lookup),
            "completed_at": completed_at,
            **{
                name: functools.partial(parse_text, max_length=FundTransaction._meta.get_field(name).max_length)
                for name in TEXT_FIELDS
            },
        }

    def empty_value(self, field_name: str) -> Any:
        return None if field_name == "completed_at" else ""

    def make_row(self, number: int, values: list[Any]) -> ParsedRow:
        row = ParsedRow(number, *values, bool(values[-1]))
        if not row.reference_given:
            row.external_reference = row_digest(row)
        return row

    def check(self, job: FileJob, parsed: ParsedFile) -> CheckedFile:
        return check_rows(parsed, self)

    def save(self, job: FileJob, checked: CheckedFile, progress: Progress) -> dict[str, Any]:
        ids = distributor_ids({row.distributor_code for row in checked.new_rows})
        constants = {"status": FundTransactionStatus.DRAFT, "created_by": job.created_by_id, "created_at": timezone.now()}
        done = 0
        for batch in _chunks(checked.new_rows, BATCH_SIZE):
            _insert_batch(
                {
                    "distributor": [ids[row.distributor_code] for row in batch],
                    **{name: [getattr(row, name) for row in batch] for name in (
                        "type", "amount", "payment_channel", "payer_account", "receiving_account", "voucher_no",
                        "completed_at", "remark", "external_reference")},
                },
                constants,
            )
            done += len(batch)
            progress(done)
        return {}


def check_rows(parsed: ParsedFile, spec: SpreadsheetImport) -> CheckedFile:
    """Checks that need the database and the whole file: distributors, duplicates, already imported."""
    errors = list(parsed.errors)
    labels = parsed.labels

    def error(row: ParsedRow, name: str, message: str) -> None:
        errors.append({"row": row.row, "field": labels[name] if name else "", "message": message})

    candidates: list[ParsedRow] = []
    first_voucher: dict[str, int] = {}
    first_reference: dict[str, int] = {}
    for row in parsed.rows:
        seen = first_reference.setdefault(row.external_reference, row.row)
        if seen != row.row:
            if row.reference_given:
                error(row, "external_reference", _("The same external reference is on row %(row)d.") % {"row": seen})
            else:
                error(row, "", _("This row repeats row %(row)d exactly; add a voucher number or an external "
                                 "reference if they are two transactions.") % {"row": seen})
            continue
        if row.voucher_no:
            seen = first_voucher.setdefault(row.voucher_no, row.row)
            if seen != row.row:
                error(row, "voucher_no", _("The voucher number %(voucher)s is also on row %(row)d.")
                      % {"voucher": row.voucher_no, "row": seen})
                continue
        candidates.append(row)

    distributors: dict[str, tuple[int, str]] = {
        code: (pk, status)
        for pk, code, status in _select_any("SELECT id, code, status FROM {distributor} WHERE code = ANY(%s)",
                                            sorted({row.distributor_code for row in candidates}))
    }
    # NOT (... = '') repeats the partial unique indexes' condition, so PostgreSQL can use them.
    recorded: dict[str, tuple] = {
        reference: (pk, (code, kind, amount, voucher))
        for pk, reference, code, kind, amount, voucher in _select_any(
            "SELECT t.id, t.external_reference, d.code, t.type, t.amount, t.voucher_no FROM {transaction} t "
            "JOIN {distributor} d ON d.id = t.distributor_id "
            "WHERE t.external_reference = ANY(%s) AND NOT (t.external_reference = '')",
            [row.external_reference for row in candidates],
        )
    }
    vouchers: dict[str, tuple[int, str]] = {
        voucher: (pk, reference)
        for pk, voucher, reference in _select_any(
            "SELECT id, voucher_no, external_reference FROM {transaction} "
            "WHERE voucher_no = ANY(%s) AND NOT (voucher_no = '')",
            [row.voucher_no for row in candidates if row.voucher_no],
        )
    }

    new_rows, skipped = [], 0
    for row in candidates:
        if row.external_reference in recorded:
            pk, content = recorded[row.external_reference]
            if content == (row.distributor_code, row.type, row.amount, row.voucher_no):
                skipped += 1
            else:
                error(row, "external_reference", _("The external reference %(reference)s is already used by FT%(id)d, "
                                                   "a different transaction.") % {"reference": row.external_reference, "id": pk})
            continue
        distributor = distributors.get(row.distributor_code)
        if distributor is None:
            error(row, "distributor_code", _("No distributor has the code %(code)s.") % {"code": row.distributor_code})
            continue
        if distributor[1] == DistributorStatus.CLOSED:
            error(row, "distributor_code", _("The distributor %(code)s is closed.") % {"code": row.distributor_code})
            continue
        if row.voucher_no in vouchers:
            error(row, "voucher_no", _("The voucher number %(voucher)s is already recorded (FT%(id)d).")
                  % {"voucher": row.voucher_no, "id": vouchers[row.voucher_no][0]})
            continue
        new_rows.append(row)

    errors = spec.sort_errors(errors, labels)
    return CheckedFile(total_rows=parsed.total_rows, new_rows=new_rows, skipped=skipped, errors=errors)


def _select_any(sql: str, values: list[str]) -> Iterator[tuple]:
    """Rows matching a list of values, a chunk at a time, the list passed as ONE array parameter.

    `field__in=[...]` turns into one placeholder per value, so the SQL to build and parse grows with
    the file; an array is one parameter however long.
    """
    sql = sql.format(transaction=FundTransaction._meta.db_table, distributor=Distributor._meta.db_table)
    with connection.cursor() as cursor:
        for chunk in _chunks(values, 20000):
            cursor.execute(sql, [chunk])
            yield from cursor.fetchall()



def distributor_ids(codes: set[str]) -> dict[str, int]:
    return {code: pk for pk, code in _select_any("SELECT id, code FROM {distributor} WHERE code = ANY(%s)", sorted(codes))}


def _chunks(values: list, size: int = 5000) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _insert_batch(columns: dict[str, list], constants: dict[str, Any]) -> None:
    """INSERT one batch as one statement: a column array per field, unnested by PostgreSQL.

    Same result as bulk_create (one INSERT per batch, the history trigger fires for every row),
    without bulk_create's per-object, per-field Python preparation, which was most of the time
    of a 100,000-row import. Fields not given take their model default, so a field added later
    with a default needs nothing here.
    """
    fields = [field for field in FundTransaction._meta.concrete_fields if not field.primary_key]
    selects, select_params, arrays, array_params = [], [], [], []
    for model_field in fields:
        db_type = model_field.db_type(connection)
        if model_field.name in columns:
            arrays.append(f"%s::{db_type}[]")
            array_params.append(columns[model_field.name])
            selects.append(f"u.c{len(arrays)}")
        else:
            value = constants.get(model_field.name, model_field.get_default())
            selects.append(f"%s::{db_type}")
            select_params.append(model_field.get_db_prep_save(value, connection))
    quote = connection.ops.quote_name
    aliases = ", ".join(f"c{index}" for index in range(1, len(arrays) + 1))
    sql = (
        f"INSERT INTO {quote(FundTransaction._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"SELECT {', '.join(selects)} FROM unnest({', '.join(arrays)}) AS u({aliases})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*select_params, *array_params])


def import_fund_transactions(*, actor, filename: str, content: bytes, language: str = "en"):
    """Upload, check and (when the check is clean) import in this process: for the shell, the bench and tests."""
    from config.imports import file_import_now

    return file_import_now(kind=FileJobKind.FUND_TRANSACTION_IMPORT, actor=actor, filename=filename,
                           content=content, language=language)
