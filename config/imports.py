"""Every spreadsheet import, one pipeline: upload, check (the dry run), confirm, import all or nothing.

    file_import_create   upload: store the file, queue its check                  -> QUEUED
    file_import_check    the dry run (a background job): read every row, convert  -> READY (errors listed,
                         and check it, keep the converted rows (FileJob.checked_rows)    nothing saved)
    file_import_confirm  the uploader confirms a file without errors              -> RUNNING
    file_import_run      (a background job) check those rows against the database -> DONE | FAILED
                         again, then save them all in ONE transaction, inside a
                         history context naming the import and its user

What differs between imports (fund transactions, batch direct charges, statements to come) is a
`SpreadsheetImport`: its columns, how each cell converts, what the database must agree with,
and how the rows are saved. Reading the file and the checks every file needs are in
config.spreadsheet_import; the job's claim and progress in config.file_jobs.

Errors are dictionaries {"row": n, "field": header, "message": text}, in the uploader's language.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import typing
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pghistory
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone, translation
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from config.file_jobs import (
    Progress,
    file_job_claim,
    file_job_content,
    file_job_fail,
    file_job_status,
    file_job_without_files,
    progress_writer,
)
from config.history import SOURCE_IMPORT
from config.models import FileJob, FileJobKind, FileJobStatus
from config.spreadsheet_import import (
    Column,
    FileRefused,
    cell_value,
    check_size,
    format_for_filename,
    is_blank,
    map_header,
    read_rows,
)

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 5000

# Each kind of import, by the class that knows its rows (loaded on first use: the business apps
# import this module, not the reverse).
IMPORT_CLASSES = {
    FileJobKind.FUND_TRANSACTION_IMPORT: "distributors.imports.FundTransactionImport",
    FileJobKind.ORDER_BATCH_IMPORT: "orders.imports.BatchImport",
}


@dataclass
class ParsedFile:
    total_rows: int = 0
    rows: list = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # field -> column header as the file writes it


@dataclass
class CheckedFile:
    total_rows: int
    new_rows: list
    skipped: int
    errors: list[dict]
    summary: dict = field(default_factory=dict)  # what the preview shows besides the counts


class ImportRefused(ValidationError):
    """The import cannot be confirmed (it has errors, nothing to create, is not checked, or is not yours)."""


class SpreadsheetImport:
    """One kind of import. Subclasses give the columns, the row class and the checks; see FundTransactionImport.

    `row_class` is a dataclass whose fields are `row` (the spreadsheet's row number), then one per
    column in the order of `columns`, then any the subclass fills in `make_row`.
    """

    kind: str
    columns: tuple[Column, ...]
    row_class: type
    permission: str  # who may upload and confirm
    lock_key: int  # imports of one kind save one at a time (a transaction-level advisory lock)

    def max_rows(self, job: FileJob) -> int:
        return settings.IMPORT_MAX_ROWS

    def too_many_rows(self, limit: int) -> str:
        return _("The file has more than %(limit)d rows; split it into smaller files.") % {"limit": limit}

    def before_reading(self, job: FileJob) -> None:
        """Refuse the whole file before it is read (FileRefused), e.g. for a product no longer on sale."""

    def converters(self, job: FileJob) -> dict[str, Callable[[Any], Any]]:
        """A converter per column field (given a non-empty cell; raises ValidationError), built once per file."""
        raise NotImplementedError

    def required(self, job: FileJob) -> set[str]:
        return {column.field for column in self.columns if column.required}

    def empty_value(self, field_name: str) -> Any:
        return None

    def make_row(self, number: int, values: list[Any]):
        return self.row_class(number, *values)

    def check(self, job: FileJob, parsed: ParsedFile) -> CheckedFile:
        """What the database (and the rows among themselves) must agree with. Run at the dry run and again
        in the import's own transaction, under its lock."""
        raise NotImplementedError

    def save(self, job: FileJob, checked: CheckedFile, progress: Progress) -> dict[str, Any]:
        """Save checked.new_rows; returns the job's fields to set (created_count, options...)."""
        raise NotImplementedError

    # --- reading, shared by every import ---

    def parse(self, job: FileJob, content: bytes, progress: Progress | None = None) -> ParsedFile:
        """Read and convert every row. Raises FileRefused for whole-file problems."""
        self.before_reading(job)
        rows = read_rows(content, job.file_format)
        try:
            first = next(rows, None)
            if first is None or first[0] != 1 or is_blank(first[1]):
                raise FileRefused(_("The file is empty, or its first row (the column headers) is empty."))
            header = list(first[1])
            while header and header[-1] in (None, ""):
                header.pop()
            positions, labels = map_header(header, self.columns)
            parser = RowParser(self, job, positions, labels)
            result = ParsedFile(labels=labels)
            limit = self.max_rows(job)
            for number, values in rows:
                if is_blank(values):
                    continue  # blank lines between or after the data, as Excel leaves them
                result.total_rows += 1
                if result.total_rows > limit:
                    raise FileRefused(self.too_many_rows(limit))
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

    def sort_errors(self, errors: list[dict], labels: dict[str, str]) -> list[dict]:
        """By row, then in the template's column order (the file's own errors first)."""
        order = {labels.get(column.field, column.field): index for index, column in enumerate(self.columns)}
        return sorted(errors, key=lambda e: (e["row"] if e["row"] is not None else -1, order.get(e["field"], -1)))


class RowParser:
    """Converts one row's cells; built once per file (converters, positions, labels), called per row."""

    def __init__(self, spec: SpreadsheetImport, job: FileJob, positions: dict[str, int], labels: dict[str, str]):
        converters, required = spec.converters(job), spec.required(job)
        self.make_row = spec.make_row
        # per column: (position in the file or None, converter, required, label, value when empty)
        self.fields = [
            (positions.get(column.field), converters[column.field], column.field in required, labels[column.field],
             spec.empty_value(column.field))
            for column in spec.columns
        ]

    def parse(self, number: int, values: list[Any], errors: list[dict]):
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
        try:
            return self.make_row(number, converted)
        except ValidationError as err:
            errors.append({"row": number, "field": "", "message": " ".join(err.messages)})
            return None


# --- Keeping the checked rows between the dry run and the import --------------------------------


def _codecs(row_class: type) -> list[tuple[str, Callable, Callable]]:
    """(field, encode, decode) for each field of a row dataclass: Decimal and datetime as text."""
    hints = typing.get_type_hints(row_class)
    result = []
    for row_field in dataclasses.fields(row_class):
        hint = hints[row_field.name]
        kinds = set(typing.get_args(hint)) or {hint}
        if Decimal in kinds:
            result.append((row_field.name, str, Decimal))
        elif datetime.datetime in kinds:
            result.append((row_field.name, datetime.datetime.isoformat, datetime.datetime.fromisoformat))
        else:
            result.append((row_field.name, None, None))
    return result


def pack_rows(rows: Sequence, row_class: type, labels: dict[str, str], total_rows: int) -> bytes:
    """The checked rows, compressed, so the import saves exactly what the dry run checked."""
    codecs = _codecs(row_class)
    packed = [
        [value if encode is None or value is None else encode(value)
         for value, (_name, encode, _decode) in zip((getattr(row, name) for name, _e, _d in codecs), codecs, strict=True)]
        for row in rows
    ]
    document = {"total_rows": total_rows, "labels": labels, "rows": packed}
    return zlib.compress(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(), 1)


def unpack_rows(packed: bytes, row_class: type) -> ParsedFile:
    document = json.loads(zlib.decompress(packed))
    decoders = [decode for _name, _encode, decode in _codecs(row_class)]
    rows = [
        row_class(*(value if decode is None or value is None else decode(value)
                    for value, decode in zip(values, decoders, strict=True)))
        for values in document["rows"]
    ]
    return ParsedFile(total_rows=document["total_rows"], rows=rows, labels=document["labels"])


# --- The services ------------------------------------------------------------------------------


def clean_upload(upload):
    """A form's uploaded file, refused at once if it is too large or not .xlsx / .csv (the form field's error)."""
    from django import forms

    if upload.size > settings.IMPORT_MAX_FILE_BYTES:
        raise forms.ValidationError(
            _("The file is larger than %(limit)d MB; split it into smaller files.")
            % {"limit": settings.IMPORT_MAX_FILE_BYTES // (1024 * 1024)}
        )
    try:
        format_for_filename(upload.name)
    except FileRefused as refused:
        raise forms.ValidationError(str(refused)) from None
    return upload


def spreadsheet_import(kind: str) -> SpreadsheetImport:
    return import_string(IMPORT_CLASSES[kind])()


def file_import_create(*, kind: str, actor, filename: str, content: bytes, language: str,
                       options: dict | None = None) -> FileJob:
    """Store the upload and queue its check, in one transaction (no job without its row, nor the reverse)."""
    from config.tasks import check_file_import

    file_format = format_for_filename(filename)
    check_size(content)
    with transaction.atomic():
        job = FileJob.objects.create(
            kind=kind, content=content, original_filename=filename[-255:], file_format=file_format,
            language=language, options=options or {}, created_by=actor,
        )
        check_file_import.defer(file_job_id=job.pk)
    return job


def file_import_check(*, file_job_id: int) -> str:
    """The dry run: check every row and record the counts and every error; save nothing."""
    if not file_job_claim(file_job_id, from_status=FileJobStatus.QUEUED, to_status=FileJobStatus.CHECKING,
                          processed_rows=0):
        return file_job_status(file_job_id)
    job = file_job_without_files(file_job_id)
    spec = spreadsheet_import(job.kind)
    packed = b""
    with translation.override(job.language):
        try:
            parsed = spec.parse(job, file_job_content(job.pk), progress_writer(job.pk))
            checked = spec.check(job, parsed)
            if not checked.errors:
                packed = pack_rows(parsed.rows, spec.row_class, parsed.labels, parsed.total_rows)
        except FileRefused as refused:
            checked = CheckedFile(total_rows=0, new_rows=[], skipped=0, errors=refused.errors)
        except Exception:
            file_job_fail(job.pk, [{"row": None, "field": "", "message": _("The file could not be checked; ask for help.")}])
            raise
    job.status = FileJobStatus.READY
    job.total_rows = checked.total_rows
    job.processed_rows = checked.total_rows
    job.importable_rows = len(checked.new_rows) if not checked.errors else 0
    job.skipped_count = checked.skipped
    job.errors = checked.errors
    job.summary = checked.summary
    job.checked_rows = packed
    job.save(update_fields=["status", "total_rows", "processed_rows", "importable_rows", "skipped_count", "errors",
                            "summary", "checked_rows", "updated_at"])
    return job.status


def file_import_confirm(*, file_job_id: int, actor) -> FileJob:
    """RUNNING, and the import queued, in one transaction: only a checked file without errors, by its uploader."""
    from config.tasks import run_file_import

    with transaction.atomic():
        job = FileJob.objects.defer("content", "checked_rows").select_for_update().get(pk=file_job_id)
        if not job.is_import:
            raise ImportRefused(_("Only an import is confirmed."))
        if job.created_by_id != actor.pk:
            # The clerk who saw the preview is the one who answers for it.
            raise ImportRefused(_("Only %(user)s, who uploaded this file, can confirm its import.")
                                % {"user": job.created_by})
        if not job.can_confirm:
            raise ImportRefused(_("This import cannot be confirmed: it is %(status)s, with %(errors)d errors and "
                                  "%(rows)d rows to create.") % {"status": job.get_status_display(),
                                                                  "errors": len(job.errors), "rows": job.importable_rows})
        job.status = FileJobStatus.RUNNING
        job.processed_rows = 0
        job.save(update_fields=["status", "processed_rows", "updated_at"])
        run_file_import.defer(file_job_id=job.pk)
    return job


class _Rollback(Exception):
    def __init__(self, errors: list[dict]):
        self.errors = errors


def file_import_run(*, file_job_id: int) -> str:
    """Check the rows again against the database (it may have changed since the dry run), then save them all.

    Everything is saved in ONE transaction: a failure anywhere leaves nothing behind. History rows
    are written by the database triggers, attributed to this import and its user.
    """
    job = file_job_without_files(file_job_id)
    if job.status != FileJobStatus.RUNNING:
        logger.info("Import %s is %s, not running; nothing done", job.pk, job.status)
        return job.status
    spec = spreadsheet_import(job.kind)
    with translation.override(job.language):
        try:
            return _run(job, spec)
        except FileRefused as refused:
            return file_job_fail(job.pk, refused.errors)
        except ValidationError as refused:  # the business refused the rows as a whole
            return file_job_fail(job.pk, [{"row": None, "field": "", "message": " ".join(refused.messages)}])
        except _Rollback as rollback:
            return file_job_fail(job.pk, rollback.errors)
        except IntegrityError:
            logger.warning("Import %s collided with another change", job.pk, exc_info=True)
            return file_job_fail(job.pk, [{"row": None, "field": "", "message": _(
                "Some of these rows were recorded by someone else meanwhile; nothing was imported. "
                "Upload the file again to check it."
            )}])
        except Exception:
            file_job_fail(job.pk, [{"row": None, "field": "", "message": _("The import failed; nothing was imported.")}])
            raise


def _run(job: FileJob, spec: SpreadsheetImport) -> str:
    progress = progress_writer(job.pk)
    with pghistory.context(source=SOURCE_IMPORT, import_job=job.pk, user=job.created_by_id), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [spec.lock_key])
        # Read under the lock: a second run of this job (queued twice) waited for the first to commit,
        # and finds it done. Not FOR UPDATE: the progress connection writes this row meanwhile.
        locked = FileJob.objects.defer("content").get(pk=job.pk)
        if locked.status != FileJobStatus.RUNNING:
            return locked.status
        parsed = unpack_rows(bytes(locked.checked_rows), spec.row_class)
        checked = spec.check(locked, parsed)
        if checked.errors:
            raise _Rollback(checked.errors)
        changes = spec.save(locked, checked, progress)
        # The job row is touched only now, after the last progress write on the other connection.
        locked.status = FileJobStatus.DONE
        locked.total_rows = checked.total_rows
        locked.processed_rows = checked.total_rows
        locked.created_count = len(checked.new_rows)
        locked.skipped_count = checked.skipped
        locked.errors = []
        locked.checked_rows = b""  # the file itself stays; the working copy is no longer needed
        locked.finished_at = timezone.now()
        update = ["status", "total_rows", "processed_rows", "created_count", "skipped_count", "errors",
                  "checked_rows", "finished_at", "updated_at"]
        for name, value in changes.items():
            setattr(locked, name, value)
            update.append(name)
        locked.save(update_fields=update)
    logger.info("Import %s: %d rows created, %d already imported", job.pk, locked.created_count, locked.skipped_count)
    return FileJobStatus.DONE


def file_import_now(*, kind: str, actor, filename: str, content: bytes, language: str = "en",
                    options: dict | None = None) -> FileJob:
    """Upload, check and (when the check is clean) import in this process: for the shell, the bench and tests."""
    job = file_import_create(kind=kind, actor=actor, filename=filename, content=content, language=language,
                             options=options)
    file_import_check(file_job_id=job.pk)
    job.refresh_from_db()
    if job.can_confirm:
        file_import_confirm(file_job_id=job.pk, actor=actor)
        file_import_run(file_job_id=job.pk)
        job.refresh_from_db()
    return job
