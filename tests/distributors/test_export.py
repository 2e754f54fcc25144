"""Exports of fund transactions and ERP sync results: xlsx and csv, formula-looking cells neutralized."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse
from openpyxl import load_workbook

from config.roles import FINANCE_CLERK
from distributors.models import ErpSync, FundTransaction
from tests.factories import make_distributor, make_user, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk_client(client):
    sign_in(client, make_user("clerk", FINANCE_CLERK))
    return client


@pytest.fixture
def transaction():
    clerk = make_user("maker")
    distributor = make_distributor(code="D001")
    record = FundTransaction.objects.create(
        distributor=distributor, type="recharge", amount=Decimal("1234.50"), voucher_no="V1",
        payer_account="+8613800000000", remark='=HYPERLINK("http://evil.example","点我")', created_by=clerk,
    )
    ErpSync.objects.create(
        fund_transaction=record, target="wdt", client_reference=f"FT{record.pk:010d}", status="failed",
        last_error="@SUM(1+1) upstream said no",
    )
    return record


def export(client, action: str, record) -> bytes:
    response = client.post(
        reverse("admin:distributors_fundtransaction_changelist"),
        {"action": action, "_selected_action": [record.pk]},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    return response.content


def xlsx_rows(content: bytes) -> list[tuple]:
    return list(load_workbook(io.BytesIO(content)).active.iter_rows(values_only=True))


def csv_rows(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf")  # a BOM, so Excel reads the UTF-8
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def test_transactions_to_xlsx_keep_numbers_and_neutralize_formulas(clerk_client, transaction):
    header, line = xlsx_rows(export(clerk_client, "export_xlsx", transaction))

    values = dict(zip(header, line, strict=True))
    assert values["Amount"] == 1234.5  # a number cell
    assert values["Remark"] == '\'=HYPERLINK("http://evil.example","点我")'
    assert values["Payer account"] == "'+8613800000000"
    assert values["Distributor code"] == "D001"


def test_transactions_to_csv_neutralize_formulas_too(clerk_client, transaction):
    header, line = csv_rows(export(clerk_client, "export_csv", transaction))

    values = dict(zip(header, line, strict=True))
    assert values["Amount"] == "1234.50"
    assert values["Remark"].startswith("'=HYPERLINK")
    assert values["Payer account"] == "'+8613800000000"


@pytest.mark.parametrize("action", ["export_syncs_xlsx", "export_syncs_csv"])
def test_sync_results_export(clerk_client, transaction, action):
    content = export(clerk_client, action, transaction)

    rows = xlsx_rows(content) if action.endswith("xlsx") else csv_rows(content)
    values = dict(zip(rows[0], rows[1], strict=True))
    assert values["Client reference"] == f"FT{transaction.pk:010d}"
    assert values["Last error"] == "'@SUM(1+1) upstream said no"
    assert values["Status"] == "Failed"


def test_an_export_in_chinese_imports_again_unchanged(client, transaction):
    from distributors.imports import import_fund_transactions

    sign_in(client, make_user("clerk2", FINANCE_CLERK))
    content = client.post(
        reverse("admin:distributors_fundtransaction_changelist"),
        {"action": "export_xlsx", "_selected_action": [transaction.pk]},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    ).content
    assert xlsx_rows(content)[0][1:4] == ("分销商编号", "类型", "金额")

    # The extra columns (ID, status...) are not import columns: the file is refused for them, by name.
    job = import_fund_transactions(actor=transaction.created_by, filename="export.xlsx", content=content)
    assert {error["field"] for error in job.errors} >= {"ID"}
