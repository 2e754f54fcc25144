"""Reading a clerk's .xlsx or .csv upload safely, shared by every import (fund transactions, batch orders).

Only reading and the checks every import needs live here: size limits, zip bombs, old .xls files,
text encodings, formulas (refused, never evaluated), Excel error cells, blank lines and matching
column headers written in Chinese or English. What a row means is each import's own business.

Errors are dictionaries {"row": n, "field": header, "message": text}: row 1 is the header, data
starts on row 2, and `row` is None for a problem with the file as a whole.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import functools
import io
import logging
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree import ElementTree

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import TextChoices
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from openpyxl.utils.datetime import from_excel

logger = logging.getLogger(__name__)

XLSX = "xlsx"
CSV = "csv"
MAX_COLUMNS = 50  # cells further right are ignored: no template is that wide


class FileRefused(Exception):
    """The file as a whole cannot be read (not a spreadsheet, too large, wrong headers...)."""

    def __init__(self, message: str, *, row: int | None = None, field: str = ""):
        super().__init__(message)
        self.errors = [{"row": row, "field": field, "message": message}]

    @classmethod
    def with_errors(cls, errors: list[dict]) -> FileRefused:
        refused = cls(errors[0]["message"])
        refused.errors = errors
        return refused


class Formula(str):
    """Text of a formula cell: reported, never evaluated."""


class CellError(str):
    """An Excel error value such as #N/A."""


def format_for_filename(filename: str) -> str:
    lowered = filename.lower()
    if lowered.endswith(".xlsx"):
        return XLSX
    if lowered.endswith(".csv"):
        return CSV
    raise FileRefused(_("Only .xlsx and .csv files can be imported."))


def check_size(content: bytes) -> None:
    if not content:
        raise FileRefused(_("The file is empty."))
    if len(content) > settings.IMPORT_MAX_FILE_BYTES:
        raise FileRefused(
            _("The file is larger than %(limit)d MB; split it into smaller files.")
            % {"limit": settings.IMPORT_MAX_FILE_BYTES // (1024 * 1024)}
        )


def check_xlsx_archive(content: bytes) -> None:
    """Refuse what is not an xlsx, and zip bombs, before openpyxl inflates anything.

    zipfile never inflates a member past the size its header declares (it stops there and fails
    the CRC check), so summing the declared sizes bounds the work whatever the archive claims.
    """
    if content.startswith(b"\xd0\xcf\x11\xe0"):
        raise FileRefused(_("This is an old Excel file (.xls); save it as .xlsx and upload it again."))
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise FileRefused(_("This file is not an Excel workbook (.xlsx) and cannot be read.")) from None
    names = {member.filename for member in members}
    if "xl/workbook.xml" not in names:
        raise FileRefused(_("This file is not an Excel workbook (.xlsx) and cannot be read."))
    if sum(member.file_size for member in members) > settings.IMPORT_MAX_UNCOMPRESSED_BYTES:
        raise FileRefused(_("The workbook unpacks to far more data than its size suggests; it is refused."))


SHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
ROW_TAG, CELL_TAG, SHEET_DATA_TAG = f"{SHEET_NS}row", f"{SHEET_NS}c", f"{SHEET_NS}sheetData"
VALUE_TAG, FORMULA_TAG = f"{SHEET_NS}v", f"{SHEET_NS}f"
INLINE_TAG, TEXT_TAG, RUN_TAG = f"{SHEET_NS}is", f"{SHEET_NS}t", f"{SHEET_NS}r"


def xlsx_rows(content: bytes) -> Iterator[tuple[int, list[Any]]]:
    """(row number, values) for every row of the first sheet that has cells; formulas and errors marked.

    openpyxl (read_only) opens the package and gives the first sheet, its shared strings and which
    styles are dates. The rows themselves are streamed here with ElementTree.iterparse, because
    openpyxl's per-cell parsing builds an object per cell, most of a large file's reading time. The sheet's
    stated <dimension> is never read: rows end where the sheet's rows end, and a gap of empty rows
    costs nothing, so a dimension claiming a million rows changes nothing.
    """
    check_xlsx_archive(content)
    try:
        reader = _open_workbook(content)
        sheet_path = next(rel.target for _sheet, rel in reader.parser.find_sheets() if "chartsheet" not in rel.Type)
        source = reader.archive.open(sheet_path)
    except Exception as err:  # openpyxl raises many kinds of errors for a damaged workbook
        logger.info("Unreadable workbook: %r", err)
        raise FileRefused(_("This file is not an Excel workbook (.xlsx) and cannot be read.")) from None
    shared_strings, date_styles, epoch = reader.shared_strings, reader.wb._date_formats, reader.wb.epoch
    try:
        next_row = 1
        for _event, element in ElementTree.iterparse(source, events=("end",)):
            if element.tag != ROW_TAG:
                continue
            number = int(element.get("r") or next_row)
            next_row = number + 1
            values: list[Any] = []
            for cell in element:
                reference = cell.get("r")
                if reference:
                    column = _column_index(reference)
                    if column >= MAX_COLUMNS:
                        continue
                    if column > len(values):
                        values.extend([None] * (column - len(values)))
                values.append(_xlsx_value(cell, shared_strings, date_styles, epoch))
            element.clear()  # the emptied row stays in the tree, a few dozen bytes
            yield number, values
    except (ElementTree.ParseError, zipfile.BadZipFile, zlib.error, EOFError):
        # BadZipFile: an entry inflating to other than the size it declares (a disguised zip bomb
        # is cut at its declared size and then fails its CRC check).
        raise FileRefused(_("This file is not an Excel workbook (.xlsx) and cannot be read.")) from None
    finally:
        source.close()
        reader.archive.close()


def _open_workbook(content: bytes):
    """openpyxl's read-only loading (manifest, shared strings, workbook, styles) up to the sheets.

    load_workbook(read_only=True) would also build its worksheet objects, which scan the whole
    sheet looking for a <dimension> element when the file has none (files openpyxl itself writes).
    """
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet

    reader = ExcelReader(io.BytesIO(content), read_only=True, data_only=False)
    reader.read_manifest()
    reader.read_strings()
    reader.read_workbook()
    apply_stylesheet(reader.archive, reader.wb)
    return reader


@functools.cache
def _letters_index(letters: str) -> int:
    index = 0
    for char in letters.upper():
        index = index * 26 + (ord(char) - 64)
    return index - 1


def _column_index(reference: str) -> int:
    """0-based column of a cell reference such as "AB12"."""
    return _letters_index(reference.rstrip("0123456789"))


def _xlsx_value(cell, shared_strings, date_styles, epoch) -> Any:
    data_type = cell.get("t", "n")
    formula = cell.find(FORMULA_TAG)
    if formula is not None:
        return Formula("=" + (formula.text or ""))
    if data_type == "inlineStr":
        inline = cell.find(INLINE_TAG)
        if inline is None:
            return None
        return _text((inline.findtext(TEXT_TAG) or "")
                     + "".join(run.findtext(TEXT_TAG) or "" for run in inline.iter(RUN_TAG)))
    value = cell.findtext(VALUE_TAG)
    if value is None:
        return None
    if data_type == "s":
        return _text(str(shared_strings[int(value)]))
    if data_type == "e":
        return CellError(value)
    if data_type == "b":
        return value == "1"
    if data_type == "str":
        return _text(value)
    if data_type == "d":
        return value
    try:
        number = float(value) if ("." in value or "E" in value or "e" in value) else int(value)
    except ValueError:  # thousands of digits, or not a number at all: the column's check says what is wrong
        return value
    style = cell.get("s")
    if style and int(style) in date_styles:
        try:
            return from_excel(number, epoch)
        except (OverflowError, ValueError):
            return CellError("#VALUE!")
    return number


def _text(value: str) -> str:
    """Text of a cell: starting with "=", it is a formula wherever the value is opened in Excel."""
    return Formula(value) if value.lstrip().startswith("=") else value


def _utf8_line(content: bytes) -> int | None:
    """The first line that is UTF-8 with Chinese (or a BOM) in it, in a file that is not UTF-8 as a whole.

    Such a file mixes encodings (lines pasted from two files): decoding it all as GB18030 would turn
    those lines into mojibake (UTF-8 "测试" reads as GB18030 "娴嬭瘯"), so it is refused instead.
    """
    for number, line in enumerate(content.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if any(ord(char) >= 0x800 for char in text):  # what Chinese text and the BOM are in UTF-8
            return number
    return None


def _mixed_encodings(line: int) -> FileRefused:
    return FileRefused(
        _("The file's text encoding is neither UTF-8 nor GB18030; save it from Excel as “CSV UTF-8”."),
        row=line,
    )


def csv_rows(content: bytes) -> Iterator[tuple[int, list[Any]]]:
    """UTF-8 (with or without the BOM Excel writes) or GB18030 (what Chinese Excel saves as "CSV")."""
    if b"\x00" in content[:4096]:
        raise FileRefused(_("This file is not a CSV text file (it contains binary data)."))
    if content.startswith(codecs.BOM_UTF8):
        encodings = ("utf-8-sig",)
    else:
        encodings = ("utf-8", "gb18030")
    for encoding in encodings:
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError as err:
            if encoding == "utf-8-sig":  # declared UTF-8 by its BOM: name the line that is not
                after_bom = content[len(codecs.BOM_UTF8) :]
                raise _mixed_encodings(after_bom[: err.start].count(b"\n") + 1) from None
            continue
    else:
        raise FileRefused(
            _("The file's text encoding is neither UTF-8 nor GB18030; save it from Excel as “CSV UTF-8”.")
        )
    if encoding == "gb18030" and (line := _utf8_line(content)) is not None:
        raise _mixed_encodings(line)
    # A BOM inside the text (two UTF-8 exports pasted together) is invisible and never data.
    text = text.replace("\ufeff", "")
    number = 0
    try:
        for number, record in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            yield number, [_text(value) for value in record]
    except csv.Error as err:
        # e.g. a cell over the csv module's 131,072-character limit: the record after the last one read
        raise FileRefused(_("The CSV file is malformed: %(error)s") % {"error": err}, row=number + 1) from None


def read_rows(content: bytes, file_format: str) -> Iterator[tuple[int, list[Any]]]:
    """(row number as the spreadsheet shows it, cell values) for the header and every row after it."""
    check_size(content)
    if file_format == XLSX:
        return xlsx_rows(content)
    return csv_rows(content)


def is_blank(values: list[Any]) -> bool:
    return all(value is None or (isinstance(value, str) and not value.strip()) for value in values)


def normalize_header(text: Any) -> str:
    return " ".join(str(text).replace("\u3000", " ").split()).casefold()


def cell_value(value: Any, *, required: bool) -> Any:
    """A cell ready to convert: stripped text or the typed value, None when empty.

    Raises ValidationError for an empty required cell, a formula or an Excel error value.
    """
    if isinstance(value, Formula):
        raise ValidationError(_("Formulas are not accepted (%(formula)s); type the value itself.") % {"formula": value[:50]})
    if isinstance(value, CellError):
        raise ValidationError(_("The cell shows an Excel error (%(error)s).") % {"error": value})
    if isinstance(value, str):
        value = value.strip() or None
    if value is None and required:
        raise ValidationError(_("This cell is empty; it is required."))
    return value


@dataclass(frozen=True)
class Column:
    """One column of an import file; both header spellings are accepted whatever the clerk's language."""

    field: str
    english: str
    chinese: str
    required: bool = False
    aliases: tuple[str, ...] = ()

    def matches(self, header: Any) -> bool:
        wanted = normalize_header(header)
        names = (self.english, self.chinese, self.field, *self.aliases)
        return wanted in {normalize_header(name) for name in names}


def map_header(header: Sequence[Any], columns: Sequence[Column]) -> tuple[dict[str, int], dict[str, str]]:
    """Column positions by field, and how the file names each field. Raises FileRefused listing every problem."""
    errors, positions, labels = [], {}, {}
    chinese = False
    for index, raw in enumerate(header):
        if raw is None or str(raw).strip() == "":
            continue
        text = str(raw).strip()
        column = next((c for c in columns if c.matches(text)), None)
        if column is None:
            errors.append({"row": 1, "field": text, "message": _("Unknown column “%(header)s”.") % {"header": text}})
            continue
        if column.field in positions:
            errors.append({"row": 1, "field": text,
                           "message": _("The column “%(header)s” appears twice.") % {"header": text}})
            continue
        positions[column.field] = index
        labels[column.field] = text
        chinese = chinese or normalize_header(text) == normalize_header(column.chinese)
    for column in columns:
        labels.setdefault(column.field, column.chinese if chinese else column.english)
        if column.required and column.field not in positions:
            errors.append({"row": 1, "field": labels[column.field], "message": _("This column is missing.")})
    if errors:
        expected = "、".join(c.chinese for c in columns) if chinese else ", ".join(c.english for c in columns)
        errors.append({
            "row": 1, "field": "",
            "message": _("The first row must hold the template's column headers: %(headers)s.") % {"headers": expected},
        })
        raise FileRefused.with_errors(errors)
    return positions, labels


# --- Cell conversions every import uses ---------------------------------------------------

_lookups: dict[type[TextChoices], dict[str, str]] = {}


def choice_lookup(choices: type[TextChoices], aliases: dict[str, str]) -> dict[str, str]:
    """Every spelling accepted for a choice: its code, its label in each language, the aliases."""
    if choices not in _lookups:
        _lookups[choices] = _build_lookup(choices, aliases)
    return _lookups[choices]


def _build_lookup(choices: type[TextChoices], aliases: dict[str, str]) -> dict[str, str]:
    lookup = {normalize_header(code): code for code in choices.values}
    for language in ("en", "zh-hans"):
        with translation.override(language):
            lookup.update({normalize_header(str(label)): code for code, label in choices.choices})
    lookup.update({normalize_header(alias): code for alias, code in aliases.items()})
    return lookup


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
    code = lookup.get(normalize_header(value))
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
