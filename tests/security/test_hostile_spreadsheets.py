"""Hostile spreadsheets for both imports (fund transactions, batch direct charges).

What tests/distributors/test_import_bad_files.py and tests/orders/test_batch_import.py already
prove is not repeated here (the honest zip bomb and "=" formulas for fund transactions, the CSV
"=" formula for batches). Each file below is refused with a clear, row-precise message when a row
is at fault, or handled correctly (stored exactly as typed, never evaluated), never a 500 and
never a partial import; a check after each proves nothing changed: row counts, balances and
history event counts.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation
from openpyxl import Workbook
from pghistory.models import Events

from config.models import FileJobStatus
from config.roles import FINANCE_CLERK
from distributors.imports import import_fund_transactions
from distributors.models import Account, FundTransaction, LedgerEntry
from orders.imports import batch_import_now
from orders.models import OrderBatch, OrderKind, Product, RechargeOrder
from providers.models import Provider
from tests.distributors.import_support import ENGLISH, row
from tests.factories import fund, make_distributor, make_user, sign_in

pytestmark = pytest.mark.django_db

WATCHED_EVENTS = ["distributors.FundTransaction", "distributors.LedgerEntry", "distributors.Account",
                  "orders.RechargeOrder", "orders.OrderBatch"]
BATCH_HEADER = ["Account", "Attach values", "Face value"]


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


@pytest.fixture
def clerk():
    return make_user("hostile_clerk", FINANCE_CLERK)


@pytest.fixture
def distributor():
    distributor = make_distributor(code="D001", name="表格测试商贸")
    fund(distributor, "1000.00")
    return distributor


@pytest.fixture
def product():
    """Open amount: the face value column is read and charged, so it is a target for formulas too."""
    return Product.objects.create(
        provider=Provider.EXCHANGE, code="54092", name="加油卡", kind=OrderKind.DIRECT_CHARGE,
        needs_face_value=True,
    )


def state() -> dict:
    """Rows, balances and history events an import could change."""
    return {
        "transactions": FundTransaction.objects.count(),
        "orders": RechargeOrder.objects.count(),
        "batches": OrderBatch.objects.count(),
        "ledger": LedgerEntry.objects.count(),
        "balances": sorted(Account.objects.values_list("pk", "balance")),
        "events": {label: Events.objects.filter(pgh_obj_model=label).count() for label in WATCHED_EVENTS},
    }


# --- building files -------------------------------------------------------------------------------


def workbook(header: list, rows: list[list], *, as_text: bool = False) -> bytes:
    """An xlsx; a value starting with "=" is a formula cell, unless `as_text` stores every string as text."""
    book = Workbook()
    sheet = book.active
    for number, values in enumerate([header, *rows], start=1):
        for column, value in enumerate(values, start=1):
            cell = sheet.cell(row=number, column=column, value=value)
            if as_text and isinstance(value, str):
                cell.data_type = "s"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def csv_text(header: list, rows: list[list]) -> str:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for values in [header, *rows]:
        writer.writerow(["" if v is None else v.strftime("%Y-%m-%d %H:%M:%S") if hasattr(v, "strftime") else v
                         for v in values])
    return buffer.getvalue()


def fund_row(voucher: str, **fields) -> list:
    return row(voucher=voucher, **fields)


def inflated(content: bytes, *, size: int) -> bytes:
    """The workbook with its sheet XML padded (an XML comment) to `size` bytes: tiny once deflated."""
    source = zipfile.ZipFile(io.BytesIO(content))
    target = io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</worksheet>", b"<!--" + b"0" * size + b"--></worksheet>")
            archive.writestr(member.filename, data)
    return target.getvalue()


def lying_sizes(content: bytes, *, declared: int = 1000, matching_crc: bool = False) -> bytes:
    """The archive's sheet entry claims `declared` bytes (local header and central directory alike).

    The size check sums declared sizes, so this passes it; the sheet really inflates to far more.
    With `matching_crc`, the CRC is that of the first `declared` bytes, so the cut goes unnoticed by
    the archive and only the truncated XML is left to fail.
    """
    name = "xl/worksheets/sheet1.xml"
    archive = zipfile.ZipFile(io.BytesIO(content))
    real = archive.read(name)
    crc = zlib.crc32(real[:declared]) if matching_crc else archive.getinfo(name).CRC
    data = bytearray(content)
    header = archive.getinfo(name).header_offset
    struct.pack_into("<I", data, header + 14, crc)
    struct.pack_into("<I", data, header + 22, declared)
    position = 0
    while (position := data.find(b"PK\x01\x02", position)) >= 0:
        length = struct.unpack_from("<H", data, position + 28)[0]
        if bytes(data[position + 46 : position + 46 + length]).decode() == name:
            struct.pack_into("<I", data, position + 16, crc)
            struct.pack_into("<I", data, position + 24, declared)
        position += 4
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name).file_size == declared
    return bytes(data)


def huge_number_cell(content: bytes, reference: str, digits: int = 5000) -> bytes:
    """Replace a cell by a numeric cell of `digits` digits (more than Python converts to int by default)."""
    source = zipfile.ZipFile(io.BytesIO(content))
    target = io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename == "xl/worksheets/sheet1.xml":
                data, count = re.subn(rf'<c r="{reference}"[^>]*?(/>|>.*?</c>)'.encode(),
                                      f'<c r="{reference}"><v>{"9" * digits}</v></c>'.encode(), data)
                assert count == 1
            archive.writestr(member.filename, data)
    return target.getvalue()


# --- the two imports, each asserting nothing changed when refused ----------------------------------


@pytest.fixture
def fund_import(clerk, distributor):
    """Import fund transactions; returns (job, errors) after checking a refusal changed nothing."""

    def run(content: bytes, filename: str, *, expect_refused: bool | None = True):
        """expect_refused: True, False, or None when either is right (then the outcome is returned)."""
        before = state()
        job = import_fund_transactions(actor=clerk, filename=filename, content=content, language="en")
        if job.errors:
            assert expect_refused is not False, job.errors
            assert job.status == FileJobStatus.READY, (job.status, job.errors)
            assert job.created_count == 0 and job.importable_rows == 0
            assert all(set(error) == {"row", "field", "message"} and error["message"] for error in job.errors)
            assert state() == before
        else:
            assert expect_refused is not True, "the file was expected to be refused"
        return job, job.errors

    return run


@pytest.fixture
def batch_file(client, clerk, distributor, product):
    """Import a batch file (upload, check, and confirm and run when the check is clean); returns (batch, errors).

    A refused file: the job stays checked with its errors and nothing to confirm, its page lists them
    (never a 500) and offers no confirmation, and nothing changed.
    """
    sign_in(client, clerk)

    def run(content: bytes, filename: str, *, expect_refused: bool | None = True):
        """expect_refused: True, False, or None when either is right (then the outcome is returned)."""
        before = state()
        job = batch_import_now(distributor=distributor, product=product, actor=clerk, filename=filename,
                               content=content, language="en")
        page = client.get(reverse("admin:backoffice_filejob_change", args=[job.pk]), headers={"accept-language": "en"})
        assert page.status_code == 200
        if not job.errors:
            assert expect_refused is not True, "the file was expected to be refused"
            assert job.status == FileJobStatus.DONE, job.status
            return OrderBatch.objects.get(pk=job.options["batch_id"]), []
        assert expect_refused is not False, job.errors
        assert job.status == FileJobStatus.READY, (job.status, job.errors)
        assert job.created_count == 0 and job.importable_rows == 0 and not job.can_confirm
        assert "batch_id" not in job.options
        assert all(set(error) == {"row", "field", "message"} and error["message"] for error in job.errors)
        assert 'id="import-errors"' in page.content.decode() and 'id="confirm-import"' not in page.content.decode()
        assert state() == before
        return None, job.errors

    return run


# --- zip bombs ------------------------------------------------------------------------------------


def test_a_batch_zip_bomb_is_refused_before_it_is_inflated(batch_file, settings):
    settings.IMPORT_MAX_UNCOMPRESSED_BYTES = 1024 * 1024
    bomb = inflated(workbook(BATCH_HEADER, [["13800000001", "", 100]]), size=4 * 1024 * 1024)
    assert len(bomb) < 64 * 1024

    _batch, [error] = batch_file(bomb, "bomb.xlsx")

    assert error["row"] is None and "unpacks to far more data" in error["message"]


@pytest.mark.parametrize("matching_crc", [False, True], ids=["crc-of-whole", "crc-of-cut"])
def test_a_zip_bomb_lying_about_its_size_is_refused_for_fund_transactions(fund_import, settings, matching_crc):
    settings.IMPORT_MAX_UNCOMPRESSED_BYTES = 1024 * 1024
    real = inflated(workbook(ENGLISH, [fund_row("V1")]), size=4 * 1024 * 1024)
    bomb = lying_sizes(real, matching_crc=matching_crc)

    _job, [error] = fund_import(bomb, "bomb.xlsx")

    assert error["row"] is None and "cannot be read" in error["message"]


@pytest.mark.parametrize("matching_crc", [False, True], ids=["crc-of-whole", "crc-of-cut"])
def test_a_zip_bomb_lying_about_its_size_is_refused_for_batches(batch_file, settings, matching_crc):
    settings.IMPORT_MAX_UNCOMPRESSED_BYTES = 1024 * 1024
    real = inflated(workbook(BATCH_HEADER, [["13800000001", "", 100]]), size=4 * 1024 * 1024)
    bomb = lying_sizes(real, matching_crc=matching_crc)

    _batch, [error] = batch_file(bomb, "bomb.xlsx")

    assert error["row"] is None and "cannot be read" in error["message"]


# --- very long cells ------------------------------------------------------------------------------

LONG = "长" * 100_000


@pytest.mark.parametrize("filename", ["long.xlsx", "long.csv"])
def test_a_100000_character_remark_is_refused_on_its_row(fund_import, filename):
    rows = [fund_row("V1"), fund_row("V2", remark=LONG), fund_row("V3")]
    content = workbook(ENGLISH, rows) if filename.endswith("xlsx") else csv_text(ENGLISH, rows).encode()

    _job, errors = fund_import(content, filename)

    assert errors == [{"row": 3, "field": "Remark", "message": "Longer than 255 characters."}]


@pytest.mark.parametrize("filename", ["long.xlsx", "long.csv"])
@pytest.mark.parametrize(("column", "limit"), [(0, 128), (1, 512)], ids=["account", "attach-values"])
def test_a_100000_character_batch_cell_is_refused_on_its_row(batch_file, filename, column, limit):
    long_row = ["13800000002", "", 100]
    long_row[column] = LONG
    rows = [["13800000001", "", 100], long_row, ["13800000003", "", 100]]
    content = workbook(BATCH_HEADER, rows) if filename.endswith("xlsx") else csv_text(BATCH_HEADER, rows).encode()

    _batch, errors = batch_file(content, filename)

    assert errors == [{"row": 3, "field": BATCH_HEADER[column], "message": f"Longer than {limit} characters."}]


def test_a_csv_cell_beyond_the_csv_readers_own_limit_is_refused_on_its_row(fund_import):
    """Python's csv module stops at 131,072 characters a field: that too names the row, never a 500."""
    rows = [fund_row("V1"), fund_row("V2", remark="长" * 200_000)]

    _job, [error] = fund_import(csv_text(ENGLISH, rows).encode(), "long.csv")

    assert error["row"] == 3 and "malformed" in error["message"]


def test_a_batch_csv_cell_beyond_the_csv_readers_own_limit_is_refused_on_its_row(batch_file):
    rows = [["13800000001", "", 100], ["13800000002", "区" * 200_000, 100]]

    _batch, [error] = batch_file(csv_text(BATCH_HEADER, rows).encode(), "long.csv")

    assert error["row"] == 3 and "malformed" in error["message"]


def test_a_5000_digit_number_cell_is_refused_on_its_row_for_fund_transactions(fund_import):
    content = huge_number_cell(workbook(ENGLISH, [fund_row("V1"), fund_row("V2")]), "C3")  # the amount

    _job, errors = fund_import(content, "digits.xlsx")

    assert [(e["row"], e["field"]) for e in errors] == [(3, "Amount")]


@pytest.mark.parametrize("reference", ["A3", "C3"], ids=["account", "face-value"])
def test_a_5000_digit_number_cell_is_refused_on_its_row_for_batches(batch_file, reference):
    content = huge_number_cell(workbook(BATCH_HEADER, [["13800000001", "", 100], ["13800000002", "", 100]]),
                               reference)

    _batch, errors = batch_file(content, "digits.xlsx")

    field = {"A": "Account", "C": "Face value"}[reference[0]]
    assert [(e["row"], e["field"]) for e in errors] == [(3, field)]


# --- mixed encodings ------------------------------------------------------------------------------

# "测试备注" and "区服" in UTF-8 happen to be valid GB18030 byte sequences too: read as GB18030 they
# become 娴嬭瘯澶囨敞 and 鍖烘湇, the mojibake that must never be stored.
UTF8_TEXT, GB_TEXT = "测试备注", "现金退款"


def ascii_fund_row(voucher: str, remark: str) -> list:
    """Every cell ASCII but the remark, so the remark alone decides how the line decodes."""
    return fund_row(voucher, remark=remark, type="recharge", channel="bank_transfer")


def fund_csv_lines(*lines: tuple[str, str, str]) -> bytes:
    """Header in ASCII, then (voucher, remark, encoding) per line."""
    content = (",".join(ENGLISH) + "\n").encode()
    for voucher, remark, encoding in lines:
        bom = b"\xef\xbb\xbf" if encoding == "utf-8-bom" else b""
        line = csv_text(ENGLISH, [ascii_fund_row(voucher, remark)]).split("\n", 1)[1]
        content += bom + line.encode("utf-8" if encoding.startswith("utf-8") else encoding)
    return content


def test_a_utf8_fund_csv_with_a_stray_gb18030_line_stores_no_mojibake(fund_import):
    content = fund_csv_lines(("V1", UTF8_TEXT, "utf-8"), ("V2", GB_TEXT, "gb18030"), ("V3", UTF8_TEXT, "utf-8"))

    job, errors = fund_import(content, "mixed.csv", expect_refused=None)

    stored = set(FundTransaction.objects.values_list("remark", flat=True))
    assert errors or stored == {UTF8_TEXT, GB_TEXT}, stored
    if errors:
        assert job.created_count == 0 and not FundTransaction.objects.exists()
        assert "encoding" in " ".join(e["message"] for e in errors)


def test_a_gb18030_fund_csv_with_a_utf8_bom_line_stores_no_mojibake(fund_import):
    header = ",".join(ENGLISH) + "\n"
    gb_line = csv_text(ENGLISH, [ascii_fund_row("V1", GB_TEXT)]).split("\n", 1)[1]
    utf8_line = csv_text(ENGLISH, [ascii_fund_row("V2", UTF8_TEXT)]).split("\n", 1)[1]
    content = header.encode() + gb_line.encode("gb18030") + b"\xef\xbb\xbf" + utf8_line.encode()

    job, errors = fund_import(content, "mixed.csv", expect_refused=None)

    stored = set(FundTransaction.objects.values_list("remark", flat=True))
    assert errors or stored == {UTF8_TEXT, GB_TEXT}, stored
    if errors:
        assert job.created_count == 0 and not FundTransaction.objects.exists()
        assert "encoding" in " ".join(e["message"] for e in errors)


def test_a_gb18030_fund_csv_starting_with_a_utf8_bom_line_is_refused(fund_import):
    content = b"\xef\xbb\xbf" + (",".join(ENGLISH) + "\n").encode()
    content += csv_text(ENGLISH, [ascii_fund_row("V1", GB_TEXT)]).split("\n", 1)[1].encode("gb18030")

    _job, [error] = fund_import(content, "mixed.csv")

    assert error["row"] == 2 and "encoding" in error["message"]


def batch_csv(*lines: tuple[str, str, str], header: str = "Account,Attach values,Face value\n") -> bytes:
    content = header.encode("utf-8")
    for account, attach, encoding in lines:
        bom = b"\xef\xbb\xbf" if encoding == "utf-8-bom" else b""
        content += bom + f"{account},{attach},100\n".encode("utf-8" if encoding.startswith("utf-8") else encoding)
    return content


@pytest.mark.parametrize("lines", [
    [("13800000001", "区服", "utf-8"), ("13800000002", GB_TEXT, "gb18030")],
    [("13800000001", GB_TEXT, "gb18030"), ("13800000002", "区服", "utf-8-bom")],
    [("13800000001", GB_TEXT, "gb18030"), ("13800000002", UTF8_TEXT, "utf-8")],
], ids=["utf8-with-a-gb18030-line", "gb18030-with-a-utf8-bom-line", "gb18030-with-a-utf8-line"])
def test_a_batch_csv_with_mixed_encodings_stores_no_mojibake(batch_file, lines):
    intended = {attach for _account, attach, _encoding in lines}

    batch, errors = batch_file(batch_csv(*lines), "mixed.csv", expect_refused=None)

    if errors:  # refused (and batch_file proved nothing changed)
        assert "encoding" in " ".join(e["message"] for e in errors)
    else:
        assert set(batch.orders.values_list("attach_values", flat=True)) == intended


def test_a_second_bom_in_a_utf8_batch_csv_is_not_stored_in_the_account(batch_file):
    """Two exports pasted together: the second one's BOM must not end up inside an account number."""
    content = b"\xef\xbb\xbf" + batch_csv(("13800000001", "", "utf-8"), ("13800000002", "", "utf-8-bom"))

    batch, errors = batch_file(content, "twice.csv", expect_refused=False)

    assert sorted(batch.orders.values_list("target_account", flat=True)) == ["13800000001", "13800000002"]


# --- formulas -------------------------------------------------------------------------------------

FORMULAS = ["=cmd|'/c calc'!A0", "+SUM(1)", "@SUM(1)", "-2+3"]


def as_formula(text: str) -> str:
    """What Excel stores when a clerk types `text` into a cell: a formula (openpyxl: a leading "=")."""
    return text if text.startswith("=") else "=" + text


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_cells_are_refused_in_every_fund_column(fund_import, text):
    formula = as_formula(text)
    rows = [fund_row("V1"), fund_row("V2", remark=formula), fund_row("V3", amount=formula),
            fund_row("V4", payer=formula)]

    _job, errors = fund_import(workbook(ENGLISH, rows), "formulas.xlsx")

    assert [(e["row"], e["field"]) for e in errors] == [(3, "Remark"), (4, "Amount"), (5, "Payer account")]
    assert all("Formulas are not accepted" in e["message"] for e in errors)


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_cells_are_refused_in_every_batch_column(batch_file, text):
    formula = as_formula(text)
    rows = [["13800000001", "", 100], [formula, "", 100], ["13800000003", formula, 100], ["13800000004", "", formula]]

    _batch, errors = batch_file(workbook(BATCH_HEADER, rows), "formulas.xlsx")

    assert [(e["row"], e["field"]) for e in errors] == [(3, "Account"), (4, "Attach values"), (5, "Face value")]
    assert all("Formulas are not accepted" in e["message"] for e in errors)


@pytest.mark.parametrize("filename", ["text.csv", "text.xlsx"])
def test_an_equals_sign_typed_as_text_is_refused_like_a_formula(fund_import, batch_file, filename):
    """'=cmd|...' as text: a formula once the file (or an export of it) is opened in Excel."""
    text = FORMULAS[0]

    def build(header, rows):
        return workbook(header, rows, as_text=True) if filename.endswith("xlsx") else csv_text(header, rows).encode()

    _job, fund_errors = fund_import(build(ENGLISH, [fund_row("V1", remark=text)]), filename)
    _batch, batch_errors = batch_file(build(BATCH_HEADER, [["13800000001", text, 100]]), filename)

    assert [(e["row"], e["field"]) for e in fund_errors] == [(2, "Remark")]
    assert [(e["row"], e["field"]) for e in batch_errors] == [(2, "Attach values")]
    assert all("Formulas are not accepted" in e["message"] for e in fund_errors + batch_errors)


@pytest.mark.parametrize("filename", ["text.csv", "text.xlsx"])
@pytest.mark.parametrize("text", FORMULAS[1:])
def test_plus_at_minus_typed_as_text_are_not_amounts(fund_import, batch_file, filename, text):
    """In an amount column they are refused, never computed (-2+3 is not 1)."""

    def build(header, rows):
        return workbook(header, rows, as_text=True) if filename.endswith("xlsx") else csv_text(header, rows).encode()

    _job, fund_errors = fund_import(build(ENGLISH, [fund_row("V1", amount=text)]), filename)
    _batch, batch_errors = batch_file(build(BATCH_HEADER, [["13800000001", "", text]]), filename)

    assert fund_errors == [{"row": 2, "field": "Amount", "message": f"“{text}” is not an amount."}]
    assert batch_errors == [{"row": 2, "field": "Face value", "message": f"“{text}” is not an amount."}]


@pytest.mark.parametrize("filename", ["text.csv", "text.xlsx"])
@pytest.mark.parametrize("text", FORMULAS[1:])
def test_plus_at_minus_typed_as_text_are_kept_as_typed_and_exported_inert(
    fund_import, batch_file, distributor, filename, text
):
    """An account such as +8613800138000 or a remark starting with "-" is ordinary text: it is kept
    exactly as typed (never evaluated), moves no money, and every export neutralizes it."""
    from config.spreadsheets import spreadsheet_safe

    def build(header, rows):
        return workbook(header, rows, as_text=True) if filename.endswith("xlsx") else csv_text(header, rows).encode()

    balances = sorted(Account.objects.values_list("pk", "balance"))
    job, _errors = fund_import(build(ENGLISH, [fund_row("V1", remark=text, payer=text)]), filename,
                               expect_refused=False)
    batch, _errors = batch_file(build(BATCH_HEADER, [[text, text, 100]]), filename, expect_refused=False)

    assert job.status == FileJobStatus.DONE and job.created_count == 1, job.errors
    assert list(FundTransaction.objects.values_list("remark", "payer_account", "amount")) == [
        (text, text, Decimal("100.50"))]
    assert list(batch.orders.values_list("target_account", "attach_values", "price_charged")) == [
        (text, text, Decimal("100.00"))]
    assert sorted(Account.objects.values_list("pk", "balance")) == balances  # drafts hold nothing
    assert spreadsheet_safe(text) == "'" + text
