"""Importing fund transactions from a clerk's .xlsx or .csv file: check every row, then save all or none.

The flow (each step a service; the two long ones run as background jobs, see distributors.tasks):

    import_job_create   upload: store the file, queue the check          -> UPLOADED
    import_job_validate the dry run: read, check every row, count        -> READY (errors listed, nothing saved)
                        and keep the converted rows (ImportJob.checked_rows)
    import_job_confirm  the clerk confirms a file without errors         -> IMPORTING
    import_job_run      check those rows against the database again,     -> DONE | FAILED
                        then bulk_create in batches in ONE transaction, inside a history
                        context naming the import and the user

Idempotency: each row has an external reference, the file's own (column 外部单号 / External
reference) or, when absent, a SHA-256 digest of the row's business content. FundTransaction has a
unique constraint on it, so a row whose reference is already recorded is reported as "already
imported" and skipped; importing the same file twice creates nothing. Voucher numbers are unique
too: one recorded under another reference is an error, not a skip.

Formulas are refused, never evaluated: a formula cell (an <f> element) is reported with its formula
text, and so is any text starting with "=" (in a CSV it would be a formula once opened in Excel).
The cached result Excel stored next to a formula is never read.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pghistory
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

# Reading the file (config.spreadsheet_import) is shared with the batch order import; the old
# private names stay in use here.
from config.history import SOURCE_IMPORT
from config.spreadsheet_import import FileRefused, cell_value, format_for_filename, read_rows
from config.spreadsheet_import import check_size as _check_size
from config.spreadsheet_import import is_blank as _is_blank
from distributors.models import (
    Distributor,
    DistributorStatus,
    FundTransaction,
    FundTransactionStatus,
    FundTransactionType,
    ImportJob,
    ImportStatus,
    PaymentChannel,
)
from distributors.resources import (
    CHANNEL_ALIASES,
    COLUMNS,
    TYPE_ALIASES,
    choice_lookup,
    column_for_header,
    parse_amount,
    parse_choice,
    parse_datetime,
    parse_text,
)

logger = logging.getLogger(__name__)

MAX_COLUMNS = 50  # cells further right are ignored: no template is that wide
BATCH_SIZE = 2000
PROGRESS_EVERY = 5000
# Progress is written on the second connection to the same database (the call-log alias), so it
# commits at once and the progress page sees it while the import's own transaction is still open.
PROGRESS_DB_ALIAS = "call_log"
# Imports run one at a time (a transaction-level advisory lock), so two files sharing a voucher
# number give one clear "already recorded" error rather than a unique-constraint failure.
IMPORT_LOCK_KEY = 0x46_54_49_4D  # "FTIM"

TEXT_FIELDS = ("payer_account", "receiving_account", "voucher_no", "remark", "external_reference")
Progress = Callable[[int], None]


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
    reference_given: bool


@dataclass
class ParsedFile:
    total_rows: int = 0
    rows: list[ParsedRow] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # field -> column header as the file writes it


@dataclass
class CheckedFile:
    total_rows: int
    new_rows: list[ParsedRow]
    skipped: int
    errors: list[dict]


# --- Reading the file ----------------------------------------------------------------------


# --- Checking rows -------------------------------------------------------------------------


def _map_header(header: list[Any]) -> tuple[dict[str, int], dict[str, str]]:
    """Column positions by field, and how the file names each field. Raises FileRefused listing every problem."""
    errors, positions, labels = [], {}, {}
    chinese = False
    for index, raw in enumerate(header):
        if raw is None or str(raw).strip() == "":
            continue
        text = str(raw).strip()
        column = column_for_header(text)
        if column is None:
            errors.append({"row": 1, "field": text, "message": _("Unknown column “%(header)s”.") % {"header": text}})
            continue
        if column.field in positions:
            errors.append({"row": 1, "field": text, "message": _("The column “%(header)s” appears twice.") % {"header": text}})
            continue
        positions[column.field] = index
        labels[column.field] = text
        chinese = chinese or text == column.chinese
    for column in COLUMNS:
        labels.setdefault(column.field, column.chinese if chinese else column.english)
        if column.required and column.field not in positions:
            errors.append({"row": 1, "field": labels[column.field], "message": _("This column is missing.")})
    if errors:
        expected = "、".join(c.chinese for c in COLUMNS) if chinese else ", ".join(c.english for c in COLUMNS)
        errors.append({
            "row": 1, "field": "",
            "message": _("The first row must hold the template's column headers: %(headers)s.") % {"headers": expected},
        })
        raise FileRefused.with_errors(errors)
    return positions, labels


def row_digest(row: ParsedRow) -> str:
    """A stable reference for a row without one: the same business content gives the same digest."""
    completed = row.completed_at.astimezone(datetime.UTC).isoformat() if row.completed_at else ""
    parts = [row.distributor_code, row.type, f"{row.amount:.2f}", row.payment_channel, row.payer_account,
             row.receiving_account, row.voucher_no, completed, row.remark]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class _RowParser:
    """Converts one row's cells; built once per file (lookups, limits, time zone), called per row."""

    def __init__(self, positions: dict[str, int], labels: dict[str, str]):
        type_lookup = choice_lookup(FundTransactionType, TYPE_ALIASES)
        channel_lookup = choice_lookup(PaymentChannel, CHANNEL_ALIASES)
        latest = timezone.now() + datetime.timedelta(minutes=5)
        zone = timezone.get_current_timezone()

        def completed_at(value: Any) -> datetime.datetime:
            if isinstance(value, datetime.datetime) and value.tzinfo is None:  # a date cell: the common case
                value = value.replace(tzinfo=zone)
            return parse_datetime(value, latest)

        converters: dict[str, Callable[[Any], Any]] = {
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
        # ParsedRow's fields after `row`, in order: (position in the file or None, converter, required, label, empty)
        self.fields = [
            (positions.get(column.field), converters[column.field], column.required, labels[column.field],
             None if column.field == "completed_at" else "")
            for column in COLUMNS
        ]

    def parse(self, number: int, values: list[Any], errors: list[dict]) -> ParsedRow | None:
        converted: list[Any] = []
        width = len(values)
        for position, convert, required, label, empty in self.fields:
            value = values[position] if position is not None and position < width else None
            try:
                if type(value) is str:  # plain text: Formula and CellError are str subclasses
                    value = value.strip() or None
                elif value is not None and not isinstance(value, (int, float, datetime.date)):
                    value = cell_value(value, required=required)  # refuses formulas and error cells
                if value is None:
                    if required:
                        raise ValidationError(_("This cell is empty; it is required."))
                    converted.append(empty)
                    continue
                converted.append(convert(value))
            except ValidationError as err:
                errors.append({"row": number, "field": label, "message": " ".join(err.messages)})
        if len(converted) < len(self.fields):
            return None
        row = ParsedRow(number, *converted, bool(converted[-1]))
        if not row.reference_given:
            row.external_reference = row_digest(row)
        return row


def parse_file(content: bytes, file_format: str, progress: Progress | None = None) -> ParsedFile:
    """Read and convert every row. Needs no database; raises FileRefused for whole-file problems."""
    rows = read_rows(content, file_format)
    try:
        first = next(rows, None)
        if first is None or first[0] != 1 or _is_blank(first[1]):
            raise FileRefused(_("The file is empty, or its first row (the column headers) is empty."))
        header = list(first[1])
        while header and header[-1] in (None, ""):
            header.pop()
        positions, labels = _map_header(header)
        parser = _RowParser(positions, labels)
        result = ParsedFile(labels=labels)
        for number, values in rows:
            if _is_blank(values):
                continue  # blank lines between or after the data, as Excel leaves them
            result.total_rows += 1
            if result.total_rows > settings.IMPORT_MAX_ROWS:
                raise FileRefused(
                    _("The file has more than %(limit)d rows; split it into smaller files.")
                    % {"limit": settings.IMPORT_MAX_ROWS}
                )
            row = parser.parse(number, values, result.errors)
            if row is not None:
                result.rows.append(row)
            if progress and result.total_rows % PROGRESS_EVERY == 0:
                progress(result.total_rows)
    finally:
        rows.close()
    if result.total_rows == 0:
        raise FileRefused(_("The file has column headers but no rows to import."))
    return result


def _chunks(values: list, size: int = 5000) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def check_rows(parsed: ParsedFile) -> CheckedFile:
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

    order = {column.field: index for index, column in enumerate(COLUMNS)}
    field_order = {labels[name]: index for name, index in order.items()}
    errors.sort(key=lambda e: (e["row"] if e["row"] is not None else -1, field_order.get(e["field"], -1)))
    return CheckedFile(total_rows=parsed.total_rows, new_rows=new_rows, skipped=skipped, errors=errors)


def _select_any(sql: str, values: list[str]) -> Iterator[tuple]:
    """Rows matching a list of values, a chunk at a time, the list passed as ONE array parameter.

    `field__in=[...]` turns into one placeholder per value, and with 100,000 values building and
    splitting that SQL cost seconds; an array is one parameter however long.
    """
    sql = sql.format(transaction=FundTransaction._meta.db_table, distributor=Distributor._meta.db_table)
    with connection.cursor() as cursor:
        for chunk in _chunks(values, 20000):
            cursor.execute(sql, [chunk])
            yield from cursor.fetchall()


def pack_rows(parsed: ParsedFile) -> bytes:
    """The checked rows, compressed, so the import saves exactly what the dry run checked."""
    rows = [
        [r.row, r.distributor_code, r.type, str(r.amount), r.payment_channel, r.payer_account, r.receiving_account,
         r.voucher_no, r.completed_at.isoformat() if r.completed_at else None, r.remark, r.external_reference,
         r.reference_given]
        for r in parsed.rows
    ]
    document = {"total_rows": parsed.total_rows, "labels": parsed.labels, "rows": rows}
    return zlib.compress(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(), 1)


def unpack_rows(packed: bytes) -> ParsedFile:
    document = json.loads(zlib.decompress(packed))
    fromisoformat = datetime.datetime.fromisoformat
    rows = [
        ParsedRow(row, code, kind, Decimal(amount), channel, payer, receiving, voucher,
                  fromisoformat(completed) if completed else None, remark, reference, given)
        for row, code, kind, amount, channel, payer, receiving, voucher, completed, remark, reference, given
        in document["rows"]
    ]
    return ParsedFile(total_rows=document["total_rows"], rows=rows, labels=document["labels"])


def distributor_ids(codes: set[str]) -> dict[str, int]:
    return {code: pk for pk, code in _select_any("SELECT id, code FROM {distributor} WHERE code = ANY(%s)", sorted(codes))}


# --- The services --------------------------------------------------------------------------


def import_job_create(*, actor, filename: str, content: bytes, language: str) -> ImportJob:
    """Store the upload and queue its check, in one transaction (no job without its row, nor the reverse)."""
    from distributors.tasks import validate_import

    file_format = format_for_filename(filename)
    _check_size(content)
    with transaction.atomic():
        job = ImportJob.objects.create(
            content=content,
            original_filename=filename[-255:],
            file_format=file_format,
            language=language,
            created_by=actor,
        )
        validate_import.defer(import_job_id=job.pk)
    return job


def _progress(import_job_id: int) -> Progress:
    def report(rows: int) -> None:
        ImportJob.objects.using(PROGRESS_DB_ALIAS).filter(pk=import_job_id).update(processed_rows=rows)

    return report


def _job_without_content(import_job_id: int) -> ImportJob:
    return ImportJob.objects.defer("content", "checked_rows").get(pk=import_job_id)


def _content(import_job_id: int) -> bytes:
    return bytes(ImportJob.objects.values_list("content", flat=True).get(pk=import_job_id))


def import_job_validate(*, import_job_id: int) -> str:
    """The dry run: check every row and record the counts and every error; save no transaction."""
    claimed = ImportJob.objects.filter(pk=import_job_id, status=ImportStatus.UPLOADED).update(
        status=ImportStatus.VALIDATING, processed_rows=0, updated_at=timezone.now()
    )
    if not claimed:
        return ImportJob.objects.values_list("status", flat=True).get(pk=import_job_id)
    job = _job_without_content(import_job_id)
    packed = b""
    with translation.override(job.language):
        try:
            parsed = parse_file(_content(job.pk), job.file_format, _progress(job.pk))
            checked = check_rows(parsed)
            if not checked.errors:
                packed = pack_rows(parsed)
        except FileRefused as refused:
            checked = CheckedFile(total_rows=0, new_rows=[], skipped=0, errors=refused.errors)
        except Exception:
            _fail(job, [{"row": None, "field": "", "message": _("The file could not be checked; ask for help.")}])
            raise
    job.status = ImportStatus.READY
    job.total_rows = checked.total_rows
    job.processed_rows = checked.total_rows
    job.importable_rows = len(checked.new_rows) if not checked.errors else 0
    job.skipped_count = checked.skipped
    job.errors = checked.errors
    job.checked_rows = packed
    job.save(update_fields=["status", "total_rows", "processed_rows", "importable_rows", "skipped_count", "errors",
                            "checked_rows", "updated_at"])
    return job.status


class ImportRefused(ValidationError):
    """The import cannot be confirmed (it has errors, nothing to create, or it is not checked yet)."""


def import_job_confirm(*, import_job_id: int, actor) -> ImportJob:
    """IMPORTING, and the import queued, in one transaction; only a checked file without errors."""
    from distributors.tasks import run_import

    with transaction.atomic():
        job = ImportJob.objects.defer("content", "checked_rows").select_for_update().get(pk=import_job_id)
        if not job.can_confirm:
            raise ImportRefused(_("This import cannot be confirmed: it is %(status)s, with %(errors)d errors and "
                                  "%(rows)d rows to create.") % {"status": job.get_status_display(),
                                                                  "errors": len(job.errors), "rows": job.importable_rows})
        job.status = ImportStatus.IMPORTING
        job.processed_rows = 0
        job.save(update_fields=["status", "processed_rows", "updated_at"])
        run_import.defer(import_job_id=job.pk)
    return job


class _Rollback(Exception):
    def __init__(self, errors: list[dict]):
        self.errors = errors


def import_job_run(*, import_job_id: int) -> str:
    """Check the rows again against the database (it may have changed since the dry run), then save them all.

    Everything is created in ONE transaction: a failure anywhere leaves no transaction behind.
    History rows are written by the database triggers, attributed to this import and its user.
    """
    job = _job_without_content(import_job_id)
    if job.status != ImportStatus.IMPORTING:
        logger.info("Import %s is %s, not importing; nothing done", job.pk, job.status)
        return job.status
    progress = _progress(job.pk)
    with translation.override(job.language):
        try:
            packed = ImportJob.objects.values_list("checked_rows", flat=True).get(pk=job.pk)
            created, skipped = _save(job, unpack_rows(bytes(packed)), progress)
        except FileRefused as refused:
            return _fail(job, refused.errors)
        except _Rollback as rollback:
            return _fail(job, rollback.errors)
        except IntegrityError:
            logger.warning("Import %s collided with another change", job.pk, exc_info=True)
            return _fail(job, [{"row": None, "field": "", "message": _(
                "Some of these rows were recorded by someone else meanwhile; nothing was imported. "
                "Upload the file again to check it."
            )}])
        except Exception:
            _fail(job, [{"row": None, "field": "", "message": _("The import failed; nothing was imported.")}])
            raise
    logger.info("Import %s: %d transactions created, %d rows already imported", job.pk, created, skipped)
    return ImportStatus.DONE


def _save(job: ImportJob, parsed: ParsedFile, progress: Progress) -> tuple[int, int]:
    with pghistory.context(source=SOURCE_IMPORT, import_job=job.pk, user=job.created_by_id), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_LOCK_KEY])
            # (pgtrigger.ignore is defined per connection in config/settings.py: keeps this linear)
        checked = check_rows(parsed)
        if checked.errors:
            raise _Rollback(checked.errors)
        ids = distributor_ids({row.distributor_code for row in checked.new_rows})
        constants = {"status": FundTransactionStatus.DRAFT, "created_by": job.created_by_id, "created_at": timezone.now()}
        done = 0
        for batch in _chunks(checked.new_rows, BATCH_SIZE):
            _insert_batch(
                {
                    "distributor": [ids[row.distributor_code] for row in batch],
                    "type": [row.type for row in batch],
                    "amount": [row.amount for row in batch],
                    "payment_channel": [row.payment_channel for row in batch],
                    "payer_account": [row.payer_account for row in batch],
                    "receiving_account": [row.receiving_account for row in batch],
                    "voucher_no": [row.voucher_no for row in batch],
                    "completed_at": [row.completed_at for row in batch],
                    "remark": [row.remark for row in batch],
                    "external_reference": [row.external_reference for row in batch],
                },
                constants,
            )
            done += len(batch)
            progress(done)
        # The job row is touched only now, after the last progress write on the other connection.
        job.status = ImportStatus.DONE
        job.total_rows = checked.total_rows
        job.processed_rows = checked.total_rows
        job.created_count = len(checked.new_rows)
        job.skipped_count = checked.skipped
        job.errors = []
        job.checked_rows = b""  # the file itself stays; the working copy is no longer needed
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "total_rows", "processed_rows", "created_count", "skipped_count",
                                "errors", "checked_rows", "finished_at", "updated_at"])
    return job.created_count, job.skipped_count


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


def _fail(job: ImportJob, errors: list[dict]) -> str:
    job.status = ImportStatus.FAILED
    job.errors = errors
    job.importable_rows = 0
    job.checked_rows = b""
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "errors", "importable_rows", "checked_rows", "finished_at", "updated_at"])
    return job.status


def import_fund_transactions(*, actor, filename: str, content: bytes, language: str = "en") -> ImportJob:
    """Upload, check and (when the check is clean) import in this process: for the shell, the bench and tests."""
    job = import_job_create(actor=actor, filename=filename, content=content, language=language)
    import_job_validate(import_job_id=job.pk)
    job.refresh_from_db()
    if job.can_confirm:
        import_job_confirm(import_job_id=job.pk, actor=actor)
        import_job_run(import_job_id=job.pk)
        job.refresh_from_db()
    return job
