"""Files a clerk might upload, built in memory."""

from __future__ import annotations

import csv
import datetime
import io
from typing import Any

from openpyxl import Workbook

from distributors.imports import COLUMNS

CHINESE = [column.chinese for column in COLUMNS]
ENGLISH = [column.english for column in COLUMNS]


def row(code: str = "D001", *, type: Any = "充值", amount: Any = 100.5, channel: Any = "银行转账", payer: str = "6222001",
        receiving: str = "6222999", voucher: str = "V001", completed: Any = datetime.datetime(2025, 3, 1, 10, 30),
        remark: str = "", reference: str = "") -> list[Any]:
    return [code, type, amount, channel, payer, receiving, voucher, completed, remark, reference]


def xlsx(rows: list[list[Any]], header: list[str] = CHINESE) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    for values in rows:
        sheet.append(values)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_bytes(rows: list[list[Any]], header: list[str] = ENGLISH, encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for values in rows:
        writer.writerow(["" if v is None else v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime.datetime)
                         else v for v in values])
    return buffer.getvalue().encode(encoding)


def upload_fund_transactions(**kwargs):
    """An uploaded fund transaction file, its check queued (config.imports.file_import_create)."""
    from config.imports import file_import_create
    from config.models import FileJobKind

    return file_import_create(kind=FileJobKind.FUND_TRANSACTION_IMPORT, **kwargs)
