"""Importing fund transactions from Excel: the dry run, the confirmed import, idempotency, the pages."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from config.imports import ImportRefused, file_import_check, file_import_confirm, file_import_run
from config.models import FileJob, FileJobStatus
from config.roles import AUDITOR
from distributors.imports import import_fund_transactions
from distributors.models import FundTransaction, FundTransactionStatus
from tests.distributors.import_support import CHINESE, ENGLISH, csv_bytes, row, upload_fund_transactions, xlsx
from tests.factories import make_distributor, make_user, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def distributors():
    return make_distributor(code="D001"), make_distributor(code="D002")


def insert_events():
    return FundTransaction.pgh_event_models["insert"].objects


def test_a_clean_file_is_checked_then_imported_as_attributed_drafts(clerk, distributors):
    content = xlsx([
        row("D001", type="充值", amount=100.5, channel="银行转账", voucher="V001"),
        row("D002", type="recharge", amount="1,234.56", channel="Alipay", voucher="V002"),
        row("D001", type="Rebate", amount=7, channel="wechat", voucher="", remark="返利"),
    ])
    job = upload_fund_transactions(actor=clerk, filename="资金流水.xlsx", content=content, language="en")

    file_import_check(file_job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.total_rows, job.importable_rows, job.errors) == (FileJobStatus.READY, 3, 3, [])
    assert FundTransaction.objects.count() == 0  # the dry run saves nothing

    file_import_confirm(file_job_id=job.pk, actor=clerk)
    file_import_run(file_job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.created_count, job.skipped_count, job.processed_rows) == (FileJobStatus.DONE, 3, 0, 3)
    first, second, third = FundTransaction.objects.order_by("pk")
    assert (first.distributor.code, first.type, first.amount, first.payment_channel) == (
        "D001", "recharge", Decimal("100.50"), "bank_transfer")
    assert (second.amount, second.payment_channel) == (Decimal("1234.56"), "alipay")
    assert (third.type, third.voucher_no, third.remark) == ("rebate", "", "返利")
    assert {t.status for t in (first, second, third)} == {FundTransactionStatus.DRAFT}
    assert all(t.created_by == clerk for t in (first, second, third))
    assert timezone.localtime(first.completed_at).isoformat() == "2025-03-01T10:30:00+08:00"
    assert len(third.external_reference) == 64  # the row digest, as no reference column was filled
    contexts = [event.pgh_context.metadata for event in insert_events().all()]
    assert len(contexts) == 3
    assert all(c["source"] == "import" and c["import_job"] == job.pk and c["user"] == clerk.pk for c in contexts)


def test_the_same_file_again_creates_nothing_and_says_the_rows_already_exist(clerk, distributors):
    content = xlsx([row("D001", voucher="V001"), row("D002", voucher="", remark="no voucher")])
    first = import_fund_transactions(actor=clerk, filename="a.xlsx", content=content)
    events = insert_events().count()

    again = import_fund_transactions(actor=clerk, filename="a.xlsx", content=content)

    assert (first.status, first.created_count) == (FileJobStatus.DONE, 2)
    assert (again.status, again.skipped_count, again.importable_rows, again.errors) == (FileJobStatus.READY, 2, 0, [])
    assert not again.can_confirm
    assert FundTransaction.objects.count() == 2
    assert insert_events().count() == events


def test_an_external_reference_column_is_the_idempotency_key(clerk, distributors):
    content = xlsx([row("D001", voucher="", reference="BANK-1"), row("D001", voucher="", reference="BANK-2")])
    import_fund_transactions(actor=clerk, filename="a.xlsx", content=content)
    partly_new = xlsx([row("D001", voucher="", reference="BANK-2"), row("D001", voucher="", reference="BANK-3")])

    job = import_fund_transactions(actor=clerk, filename="b.xlsx", content=partly_new)

    assert (job.created_count, job.skipped_count) == (1, 1)
    assert sorted(FundTransaction.objects.values_list("external_reference", flat=True)) == ["BANK-1", "BANK-2", "BANK-3"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_in_utf8_with_or_without_bom_and_in_gb18030(clerk, distributors, encoding):
    content = csv_bytes([row("D001", type="退款", channel="现金", remark="现金退款")], header=CHINESE, encoding=encoding)

    job = import_fund_transactions(actor=clerk, filename="退款.csv", content=content)

    assert job.status == FileJobStatus.DONE, job.errors
    refund = FundTransaction.objects.get()
    assert (refund.type, refund.payment_channel, refund.remark) == ("refund", "cash", "现金退款")


def test_english_headers_and_text_dates_are_accepted(clerk, distributors):
    content = csv_bytes([row("D002", type="Credit increase", completed="2025/02/03 04:05")], header=ENGLISH)

    job = import_fund_transactions(actor=clerk, filename="credit.csv", content=content)

    assert job.status == FileJobStatus.DONE, job.errors
    transaction = FundTransaction.objects.get()
    assert transaction.type == "credit_increase"
    assert timezone.localtime(transaction.completed_at).isoformat() == "2025-02-03T04:05:00+08:00"


def test_text_starting_with_plus_minus_or_at_is_stored_as_text(clerk, distributors):
    content = xlsx([row("D001", payer="+86 138", remark="@财务 -请核对")])

    import_fund_transactions(actor=clerk, filename="a.xlsx", content=content)

    transaction = FundTransaction.objects.get()
    assert (transaction.payer_account, transaction.remark) == ("+86 138", "@财务 -请核对")


def test_confirming_a_file_with_errors_is_refused(clerk, distributors):
    job = upload_fund_transactions(actor=clerk, filename="a.xlsx", content=xlsx([row("NOPE")]), language="en")
    file_import_check(file_job_id=job.pk)

    with pytest.raises(ImportRefused):
        file_import_confirm(file_job_id=job.pk, actor=clerk)
    assert FileJob.objects.get(pk=job.pk).status == FileJobStatus.READY


def test_a_voucher_recorded_between_the_check_and_the_import_fails_the_whole_import(clerk, distributors):
    content = xlsx([row("D001", voucher="V1"), row("D002", voucher="V2")])
    job = upload_fund_transactions(actor=clerk, filename="a.xlsx", content=content, language="en")
    file_import_check(file_job_id=job.pk)
    file_import_confirm(file_job_id=job.pk, actor=clerk)
    FundTransaction.objects.create(distributor=distributors[1], type="recharge", amount=1, voucher_no="V2", created_by=clerk)

    file_import_run(file_job_id=job.pk)

    job.refresh_from_db()
    assert job.status == FileJobStatus.FAILED
    assert job.errors == [{"row": 3, "field": "凭证号", "message": job.errors[0]["message"]}]
    assert "V2" in job.errors[0]["message"]
    assert FundTransaction.objects.count() == 1  # all or nothing: row 2 was not saved either


# --- The pages ---------------------------------------------------------------------------------


@pytest.fixture
def clerk_client(client, clerk):
    sign_in(client, clerk)
    return client


def test_the_change_list_links_to_the_import_and_the_templates_download(clerk_client):
    changelist = clerk_client.get(reverse("admin:distributors_fundtransaction_changelist"))
    chinese = clerk_client.get(reverse("admin:distributors_fundtransaction_import_template", args=["zh"]))
    english = clerk_client.get(reverse("admin:distributors_fundtransaction_import_template", args=["en"]))

    assert reverse("admin:distributors_fundtransaction_import") in changelist.content.decode()
    assert next(load_workbook(io.BytesIO(chinese.content)).active.iter_rows(values_only=True)) == tuple(CHINESE)
    assert next(load_workbook(io.BytesIO(english.content)).active.iter_rows(values_only=True)) == tuple(ENGLISH)


def test_upload_preview_confirm_through_the_admin(clerk_client, clerk, distributors):
    upload = io.BytesIO(xlsx([row("D001", voucher="V1"), row("NOPE", amount="abc", voucher="V2")]))
    upload.name = "bad.xlsx"

    response = clerk_client.post(reverse("admin:distributors_fundtransaction_import"), {"file": upload})

    job = FileJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{job.pk}/change/")
    running = clerk_client.get(response["Location"])
    assert b'http-equiv="refresh"' in running.content  # the check is queued: the page refreshes itself
    file_import_check(file_job_id=job.pk)
    preview = clerk_client.get(response["Location"]).content.decode()
    assert "http-equiv" not in preview
    assert 'id="confirm-import"' not in preview  # errors: nothing to confirm
    assert "<td>3</td><td>金额</td>" in preview  # row 3, the amount column, and why
    assert "abc" in preview

    good = io.BytesIO(xlsx([row("D001", voucher="V1")]))
    good.name = "good.xlsx"
    clerk_client.post(reverse("admin:distributors_fundtransaction_import"), {"file": good})
    job = FileJob.objects.order_by("-pk").first()
    file_import_check(file_job_id=job.pk)
    change_page = clerk_client.get(reverse("admin:backoffice_filejob_change", args=[job.pk]))
    assert 'id="confirm-import"' in change_page.content.decode()
    clerk_client.post(reverse("admin:backoffice_filejob_confirm", args=[job.pk]))
    file_import_run(file_job_id=job.pk)
    assert FundTransaction.objects.get().voucher_no == "V1"


def test_a_file_that_is_neither_xlsx_nor_csv_is_refused_at_upload(clerk_client):
    upload = io.BytesIO(b"%PDF-1.4")
    upload.name = "statement.pdf"

    response = clerk_client.post(reverse("admin:distributors_fundtransaction_import"), {"file": upload})

    assert response.status_code == 200
    assert response.context["form"].errors["file"]
    assert not FileJob.objects.exists()


def test_an_auditor_may_not_import(client):
    sign_in(client, make_user("auditor", AUDITOR))
    assert client.get(reverse("admin:distributors_fundtransaction_import")).status_code == 403
    assert client.post(reverse("admin:backoffice_filejob_confirm", args=[1])).status_code == 403
