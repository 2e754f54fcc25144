"""Import speed and memory, measured on a throwaway database. Prints its numbers; asserts nothing.

    .venv/bin/python bench/import_fund_transactions.py [rows]        (default 100000)

1. django-import-export's default row-by-row import (XLSX().create_dataset + Resource.import_data,
   a plain ModelResource defined here) of the first 10,000 rows;
2. our import (dry run + import: read, validate, bulk_create, history) of the same 10,000 rows;
3. our import of all the rows, with the process's peak memory;
4. the same file again, which must create nothing.

The database is a fresh one created and dropped here (Django's test-database machinery), so the
development data is never touched.
"""

from __future__ import annotations

import datetime
import io
import os
import random
import resource
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("STATIC_MANIFEST", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from openpyxl import Workbook  # noqa: E402

from bench.databases import bench_databases  # noqa: E402
from config.database_roles import as_owner  # noqa: E402

BASELINE_ROWS = int(os.environ.get("BENCH_BASELINE_ROWS", 10_000))
DISTRIBUTORS = 200
TYPES = ["充值", "recharge", "退款", "返利", "Deduction", "授信增加"]
CHANNELS = ["银行转账", "支付宝", "alipay", "微信", "现金", "Bank transfer"]


def generated_rows(count: int) -> list[list]:
    randomness = random.Random(20250101)
    start = datetime.datetime(2025, 1, 1, 9, 0, 0)
    return [
        [
            f"D{randomness.randrange(DISTRIBUTORS):04d}",
            randomness.choice(TYPES),
            float(Decimal(randomness.randrange(1, 10_000_000)) / 100),  # a number cell, as Excel stores it
            randomness.choice(CHANNELS),
            f"6222{randomness.randrange(10**12):012d}",
            "6222029999999999",
            f"V{index:09d}",
            start + datetime.timedelta(minutes=index),
            f"批量导入 {index}",
        ]
        for index in range(count)
    ]


def xlsx_of(rows: list[list]) -> bytes:
    from distributors.imports import COLUMNS

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("资金流水")
    sheet.append([column.chinese for column in COLUMNS[:9]])
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def english_xlsx_of(rows: list[list]) -> bytes:
    """The same rows under English headers, the ones django-import-export's resource reads."""
    from distributors.imports import COLUMNS

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("fund transactions")
    sheet.append([column.english for column in COLUMNS[:9]])
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def baseline_resource(clerk):
    """django-import-export's default ModelResource for FundTransaction, and only what reading the file needs:
    the distributor by its code, and the type and channel written as clerks write them (the choice
    spellings the product accepts, through the same lookup)."""
    from import_export import fields, resources, widgets

    from config.spreadsheet_import import choice_lookup, parse_choice
    from distributors.imports import CHANNEL_ALIASES, COLUMNS, TYPE_ALIASES
    from distributors.models import Distributor, FundTransaction, FundTransactionType, PaymentChannel

    class ChoiceWidget(widgets.Widget):
        def __init__(self, choices, aliases):
            super().__init__()
            self.lookup = choice_lookup(choices, aliases)

        def clean(self, value, row=None, **kwargs):
            return parse_choice(value, self.lookup)

    class BaselineResource(resources.ModelResource):
        distributor_code = fields.Field(attribute="distributor", column_name="Distributor code",
                                        widget=widgets.ForeignKeyWidget(Distributor, field="code"))
        type = fields.Field(attribute="type", column_name="Type", widget=ChoiceWidget(FundTransactionType, TYPE_ALIASES))
        payment_channel = fields.Field(attribute="payment_channel", column_name="Payment channel",
                                       widget=ChoiceWidget(PaymentChannel, CHANNEL_ALIASES))

        class Meta:
            model = FundTransaction
            fields = [column.field for column in COLUMNS[:9]]
            import_id_fields = ["voucher_no"]

        def __init__(self):
            super().__init__()
            for column in COLUMNS[:9]:
                self.fields[column.field].column_name = column.english

        def before_save_instance(self, instance, row, **kwargs):
            instance.created_by = clerk

    return BaselineResource()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def empty_fund_transactions() -> None:
    # Only the owner may empty the history (the application role may not: config.database_roles).
    with as_owner(), connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE distributors_fundtransaction, distributors_fundtransactionevent, pghistory_context CASCADE"
        )


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with bench_databases():
        run(total)


def run(total: int) -> None:
    import pghistory
    from django.contrib.auth import get_user_model
    from import_export.formats.base_formats import XLSX

    from config.imports import file_import_check, file_import_confirm, file_import_create, file_import_run
    from config.models import FileJobKind
    from distributors.imports import import_fund_transactions
    from distributors.models import Distributor, FundTransaction

    clerk = get_user_model().objects.create_user("bench-clerk", password="bench-password-0123")
    Distributor.objects.bulk_create(Distributor(code=f"D{n:04d}", name=f"分销商 {n}") for n in range(DISTRIBUTORS))
    events = FundTransaction.pgh_event_models["insert"].objects

    print(f"generating {total:,} rows ...", flush=True)
    rows = generated_rows(total)
    baseline_file = english_xlsx_of(rows[:BASELINE_ROWS])
    small_file = xlsx_of(rows[:BASELINE_ROWS])
    big_file = xlsx_of(rows)
    del rows
    print(f"  xlsx of {total:,} rows: {len(big_file) / 1024 / 1024:.1f} MiB; peak memory so far {peak_rss_mib():.0f} MiB")

    # 1. django-import-export, row by row (one lookup and one INSERT per row), in one transaction.
    started = time.perf_counter()
    dataset = XLSX().create_dataset(baseline_file)
    # As the owner: django-import-export resets the id sequence after inserting (setval), which
    # the application role may not do.
    with as_owner(), pghistory.context(source="import", import_job="baseline", user=clerk.pk):
        result = baseline_resource(clerk).import_data(
            dataset, dry_run=False, use_transactions=True
        )
    baseline_seconds = time.perf_counter() - started
    assert not result.has_errors() and not result.has_validation_errors(), "baseline import failed"
    baseline_created = FundTransaction.objects.count()
    empty_fund_transactions()

    # 2. Ours, the same rows.
    started = time.perf_counter()
    job = import_fund_transactions(actor=clerk, filename="bench-10k.xlsx", content=small_file)
    small_seconds = time.perf_counter() - started
    assert job.status == "done" and job.created_count == BASELINE_ROWS, (job.status, job.errors[:5])
    empty_fund_transactions()

    # 3. Ours, every row: the dry run (read, check, keep the rows) then the import (check, save, history).
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    job = file_import_create(kind=FileJobKind.FUND_TRANSACTION_IMPORT, actor=clerk, filename="bench.xlsx",
                             content=big_file, language="en")
    file_import_check(file_job_id=job.pk)
    checked_seconds = time.perf_counter() - started
    file_import_confirm(file_job_id=job.pk, actor=clerk)
    file_import_run(file_job_id=job.pk)
    big_seconds = time.perf_counter() - started
    job.refresh_from_db()
    assert job.status == "done", (job.status, job.errors[:5])
    created = FundTransaction.objects.count()
    history = events.filter(pgh_context__metadata__import_job=job.pk).count()

    # 4. The same file again.
    started = time.perf_counter()
    again = import_fund_transactions(actor=clerk, filename="bench.xlsx", content=big_file)
    again_seconds = time.perf_counter() - started

    print()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs; load average {load} (other processes on the machine slow every number below)")
    print(f"django-import-export row by row, {BASELINE_ROWS:,} rows: {baseline_seconds:7.2f} s "
          f"({BASELINE_ROWS / baseline_seconds:,.0f} rows/s, {baseline_created:,} created)")
    print(f"this import (check + import),   {BASELINE_ROWS:,} rows: {small_seconds:7.2f} s "
          f"({BASELINE_ROWS / small_seconds:,.0f} rows/s)  -> {baseline_seconds / small_seconds:.1f}x faster")
    print(f"this import (check + import),  {total:,} rows: {big_seconds:7.2f} s "
          f"({total / big_seconds:,.0f} rows/s; the dry run {checked_seconds:.2f} s, the import "
          f"{big_seconds - checked_seconds:.2f} s); {created:,} transactions, {history:,} history rows attributed "
          f"to import {job.pk}")
    print(f"peak memory of this process: {peak_rss_mib():.0f} MiB (was {rss_before:.0f} MiB before the big import)")
    print(f"same file again: {again_seconds:7.2f} s; created {again.created_count}, "
          f"already imported {again.skipped_count:,}, errors {len(again.errors)}")


if __name__ == "__main__":
    main()
