"""Batch direct charges from a file: every row checked and shown first, then created all or nothing.

The upload becomes a FileJob (config.imports): its check is a background job (run here by hand,
as no worker runs in these tests), its page is the preview, and its confirmed run creates the batch.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import translation
from openpyxl import Workbook

from config.imports import file_import_check, file_import_run
from config.models import FileJob, FileJobKind, FileJobStatus
from config.spreadsheet_import import FileRefused
from orders.imports import batch_import_now
from orders.models import OrderBatch, OrderStatus, Product, RechargeOrder
from orders.selectors import batch_progress
from orders.services import batch_place
from providers.models import Provider
from tests.factories import sign_in
from tests.orders.batch_support import TAKEN_CODE, suspend_distributor, take_the_batch_code

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def xlsx(rows) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_bytes(text: str, encoding="utf-8-sig") -> bytes:
    return text.encode(encoding)


@pytest.fixture
def open_amount_product():
    return Product.objects.create(
        provider=Provider.EXCHANGE, code="54092", name="加油卡", kind="direct_charge", needs_face_value=True,
    )


@pytest.fixture
def admin_client(client, clerk):
    sign_in(client, clerk)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def upload(client, distributor, product, name: str, content: bytes, **extra) -> FileJob:
    """Post the upload form; it queues the check and sends the clerk to the job's page. Returns the job."""
    response = client.post(reverse("admin:orders_orderbatch_import"), {
        "distributor": distributor.pk, "product": product.pk, "file": SimpleUploadedFile(name, content), **extra,
    })
    assert response.status_code == 302, response.context and response.context["form"].errors
    job = FileJob.objects.get()
    assert response["Location"] == reverse("admin:backoffice_filejob_change", args=[job.pk])
    assert (job.kind, job.status, job.created_by.username) == (FileJobKind.ORDER_BATCH_IMPORT, FileJobStatus.QUEUED,
                                                               "clerk")
    return job


def job_page(client, job: FileJob) -> str:
    response = client.get(reverse("admin:backoffice_filejob_change", args=[job.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_chinese_xlsx_is_previewed_creating_nothing_then_created_whole_on_confirm(
    admin_client, distributor, direct_charge_product
):
    content = xlsx([["充值账号", "附加参数", "面值"], [13800138000, "", None], ["user@example.com", "区服=1", 25]])

    job = upload(admin_client, distributor, direct_charge_product, "批充.xlsx", content, batch_code="B20250101")
    assert 'id="import-preview"' not in job_page(admin_client, job)  # not checked yet
    file_import_check(file_job_id=job.pk)

    preview = job_page(admin_client, job)
    job.refresh_from_db()
    assert (job.status, job.total_rows, job.importable_rows, job.errors) == (FileJobStatus.READY, 2, 2, [])
    assert job.summary == {"total_price": "44.00"}
    assert 'id="import-preview"' in preview and "<td>13800138000</td>" in preview and "<td>22.00</td>" in preview
    assert "44.00 in all" in preview and 'id="confirm-import"' in preview
    assert not OrderBatch.objects.exists() and not RechargeOrder.objects.exists()

    confirmed = admin_client.post(reverse("admin:backoffice_filejob_confirm", args=[job.pk]))
    assert confirmed.status_code == 302 and confirmed["Location"].endswith(f"/{job.pk}/change/")
    assert FileJob.objects.get(pk=job.pk).status == FileJobStatus.RUNNING
    assert not OrderBatch.objects.exists()  # the import itself is the next background job
    file_import_run(file_job_id=job.pk)

    job.refresh_from_db()
    batch = OrderBatch.objects.get()
    assert (job.status, job.created_count, job.options["batch_id"]) == (FileJobStatus.DONE, 2, batch.pk)
    assert batch.batch_code == "B20250101" and batch.distributor == distributor and batch.created_by == job.created_by
    items = list(batch.orders.order_by("pk").values_list("target_account", "attach_values", "face_value", "status",
                                                           "price_charged"))
    assert items == [
        ("13800138000", "", None, OrderStatus.DRAFT, Decimal("22.00")),
        ("user@example.com", "区服=1", None, OrderStatus.DRAFT, Decimal("22.00")),  # 25 is the product's face value
    ]
    done = job_page(admin_client, job)
    assert f'href="{reverse("admin:orders_orderbatch_change", args=[batch.pk])}"' in done and 'id="import-result"' in done
    assert 'id="confirm-import"' not in done
    # The job is confirmed once: a second confirm is refused and creates nothing more.
    admin_client.post(reverse("admin:backoffice_filejob_confirm", args=[job.pk]))
    file_import_run(file_job_id=job.pk)
    assert OrderBatch.objects.count() == 1 and RechargeOrder.objects.count() == 2


def test_a_bad_csv_is_refused_row_by_row_and_nothing_is_created(admin_client, distributor, open_amount_product):
    content = csv_bytes(
        "Account,Attach values,Face value\n"
        "13800000001,,100\n"
        ",,100\n"  # row 3: no account
        "13800000003,,abc\n"  # row 4: not an amount
        "13800000004,,=2*50\n"  # row 5: a formula
        "13800000001,,100\n"  # row 6: repeats row 2
        "13800000006,,\n"  # row 7: this product needs the face value
        "13800000007,,50.005\n"  # row 8: three decimals
    )

    job = upload(admin_client, distributor, open_amount_product, "batch.csv", content)
    file_import_check(file_job_id=job.pk)

    job.refresh_from_db()
    errors = [(e["row"], e["field"]) for e in job.errors]
    assert errors == [(3, "Account"), (4, "Face value"), (5, "Face value"), (6, "Account"), (7, "Face value"),
                      (8, "Face value")]
    assert job.status == FileJobStatus.READY and job.importable_rows == 0 and not job.can_confirm
    page = job_page(admin_client, job)
    assert 'id="import-errors"' in page and "This row repeats row 2" in page
    assert 'id="confirm-import"' not in page and 'id="import-preview"' not in page
    assert admin_client.post(reverse("admin:backoffice_filejob_confirm", args=[job.pk])).status_code == 302
    assert FileJob.objects.get(pk=job.pk).status == FileJobStatus.READY  # refused: still only checked
    assert not OrderBatch.objects.exists() and not RechargeOrder.objects.exists()


def test_wrong_headers_are_reported_on_row_one(clerk, distributor, direct_charge_product):
    content = xlsx([["手机号", "面值"], ["13800138000", 25]])

    job = batch_import_now(distributor=distributor, product=direct_charge_product, actor=clerk, filename="x.xlsx",
                           content=content)

    assert job.status == FileJobStatus.READY and not job.can_confirm
    assert {"row": 1, "field": "手机号", "message": "Unknown column “手机号”."} in job.errors
    assert any(e["row"] == 1 and e["field"] == "充值账号" for e in job.errors)  # the missing one, named as the file would
    assert not OrderBatch.objects.exists()


@pytest.mark.parametrize("name, content, message, at_upload", [
    ("batch.xls", b"\xd0\xcf\x11\xe0 old excel", "Only .xlsx and .csv", True),
    ("batch.csv", b"", "The file is empty", True),
    ("batch.xlsx", b"PK\x03\x04 not really a zip", "not an Excel workbook", False),
    ("batch.csv", b"Account\n", "no rows to import", False),
])
def test_files_that_cannot_be_read_are_refused_whole(distributor, direct_charge_product, clerk, name, content,
                                                     message, at_upload):
    def import_it():
        return batch_import_now(distributor=distributor, product=direct_charge_product, actor=clerk, filename=name,
                                content=content)

    if at_upload:  # refused before a job exists (the upload form says so under the file field)
        with pytest.raises(FileRefused) as refused:
            import_it()
        errors = refused.value.errors
        assert not FileJob.objects.exists()
    else:  # refused by the check, for the whole file
        job = import_it()
        errors = job.errors
        assert job.status == FileJobStatus.READY and not job.can_confirm and "batch_id" not in job.options
    assert len(errors) == 1 and errors[0]["row"] is None and message in errors[0]["message"]
    assert not OrderBatch.objects.exists()


def test_an_unreadable_upload_is_refused_on_the_form(admin_client, distributor, direct_charge_product):
    response = admin_client.post(reverse("admin:orders_orderbatch_import"), {
        "distributor": distributor.pk, "product": direct_charge_product.pk,
        "file": SimpleUploadedFile("batch.xls", b"\xd0\xcf\x11\xe0 old excel"),
    })

    assert response.status_code == 200
    assert "Only .xlsx and .csv" in " ".join(response.context["form"].errors["file"])
    assert not FileJob.objects.exists()


def test_a_fixed_price_product_refuses_a_different_face_value(distributor, direct_charge_product, clerk):
    content = csv_bytes("充值账号,面值\n13800138000,30\n")

    job = batch_import_now(distributor=distributor, product=direct_charge_product, actor=clerk, filename="b.csv",
                           content=content)

    assert job.status == FileJobStatus.READY and not job.can_confirm
    assert job.errors == [{"row": 2, "field": "面值", "message": "This product has a fixed price; leave the face value empty."}]
    assert not OrderBatch.objects.exists()


@pytest.mark.parametrize("change, message", [
    (suspend_distributor, "Distributor OD1001 is Suspended: it gets no orders."),
    (take_the_batch_code, "A batch with this code already exists."),
], ids=["distributor-suspended", "batch-code-taken"])
def test_the_check_refuses_what_the_import_would(distributor, direct_charge_product, clerk, change, message):
    """The preview must not offer a batch the import would then refuse."""
    change(distributor, direct_charge_product, clerk)
    batches = OrderBatch.objects.count()

    job = batch_import_now(distributor=distributor, product=direct_charge_product, actor=clerk, filename="b.csv",
                           content=csv_bytes("Account\n13800138000\n"), batch_code=TAKEN_CODE)

    assert job.status == FileJobStatus.READY and not job.can_confirm
    assert [(e["row"], e["message"]) for e in job.errors] == [(None, message)]
    assert OrderBatch.objects.count() == batches


def test_gb18030_csv_and_open_amounts(distributor, open_amount_product, clerk):
    content = csv_bytes("充值账号,面值\n1000111122223333,100\n1000111122224444,200.50\n", "gb18030")

    job = batch_import_now(distributor=distributor, product=open_amount_product, actor=clerk, filename="油卡.CSV",
                           content=content)

    assert job.status == FileJobStatus.DONE, job.errors
    assert job.summary == {"total_price": "300.50"}
    batch = OrderBatch.objects.get(pk=job.options["batch_id"])
    assert list(batch.orders.order_by("pk").values_list("face_value", "price_charged")) == [
        (Decimal("100.00"), Decimal("100.00")), (Decimal("200.50"), Decimal("200.50"))]


def test_the_batch_page_shows_progress_per_status(admin_client, clerk, distributor, direct_charge_product):
    content = csv_bytes("Account\n" + "".join(f"1380000{n:04d}\n" for n in range(5)))
    job = batch_import_now(distributor=distributor, product=direct_charge_product, actor=clerk, filename="b.csv",
                           content=content)
    assert job.status == FileJobStatus.DONE, job.errors
    batch_place(batch_id=job.options["batch_id"], actor=clerk)

    progress = batch_progress(batch_id=job.options["batch_id"])
    page = admin_client.get(reverse("admin:orders_orderbatch_change", args=[job.options["batch_id"]]))

    assert progress.total == 5 and progress.counts == [("queued", "Queued", 5)] and progress.percent == 0
    assert page.status_code == 200
    assert b'<progress value="0" max="5"' in page.content


def test_items_typed_into_a_new_batch_are_created_as_draft_orders(admin_client, distributor, direct_charge_product):
    prefix = "orders-0-"
    response = admin_client.post(reverse("admin:orders_orderbatch_add"), {
        "distributor": distributor.pk, "product": direct_charge_product.pk, "batch_code": "HAND1", "chunk_size": 100,
        "remark": "",
        "orders-TOTAL_FORMS": 2, "orders-INITIAL_FORMS": 0, "orders-MIN_NUM_FORMS": 0, "orders-MAX_NUM_FORMS": 1000,
        f"{prefix}target_account": "13800138000", f"{prefix}attach_values": "", f"{prefix}face_value": "",
        "orders-1-target_account": "", "orders-1-attach_values": "", "orders-1-face_value": "",
    })

    assert response.status_code == 302, response.context and response.context["errors"]
    batch = OrderBatch.objects.get(batch_code="HAND1")
    assert batch.created_by.username == "clerk"
    assert list(batch.orders.values_list("target_account", "status")) == [("13800138000", OrderStatus.DRAFT)]
