"""Batch direct charges from a file: every row checked and shown first, then created all or nothing."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation
from openpyxl import Workbook

from config.spreadsheet_import import FileRefused
from orders.imports import batch_file_check
from orders.models import OrderBatch, OrderStatus, Product, RechargeOrder
from orders.selectors import batch_progress
from orders.services import BatchImportRefused, batch_import, batch_place
from providers.models import Provider
from tests.factories import sign_in

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
    return client


def upload(client, distributor, product, name: str, content: bytes, **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(reverse("admin:orders_orderbatch_import"), {
        "distributor": distributor.pk, "product": product.pk, "file": SimpleUploadedFile(name, content), **extra,
    })


def test_a_chinese_xlsx_is_previewed_creating_nothing_then_created_whole_on_confirm(
    admin_client, distributor, direct_charge_product
):
    content = xlsx([["充值账号", "附加参数", "面值"], [13800138000, "", None], ["user@example.com", "区服=1", 25]])

    preview = upload(admin_client, distributor, direct_charge_product, "批充.xlsx", content, batch_code="B20250101")

    assert preview.status_code == 200
    assert b"import-preview" in preview.content and b"13800138000" in preview.content
    assert not OrderBatch.objects.exists() and not RechargeOrder.objects.exists()

    confirmed = admin_client.post(reverse("admin:orders_orderbatch_import"), {"token": preview.context["token"]})

    batch = OrderBatch.objects.get()
    assert confirmed.status_code == 302 and confirmed["Location"].endswith(f"/{batch.pk}/change/")
    assert batch.batch_code == "B20250101" and batch.distributor == distributor
    items = list(batch.orders.order_by("pk").values_list("target_account", "attach_values", "face_value", "status",
                                                           "price_charged"))
    assert items == [
        ("13800138000", "", None, OrderStatus.DRAFT, Decimal("22.00")),
        ("user@example.com", "区服=1", None, OrderStatus.DRAFT, Decimal("22.00")),  # 25 is the product's face value
    ]
    # The preview is used once: a second confirm creates nothing more.
    admin_client.post(reverse("admin:orders_orderbatch_import"), {"token": preview.context["token"]})
    assert OrderBatch.objects.count() == 1


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

    response = upload(admin_client, distributor, open_amount_product, "batch.csv", content)

    errors = [(e["row"], e["field"]) for e in response.context["errors"]]
    assert errors == [(3, "Account"), (4, "Face value"), (5, "Face value"), (6, "Account"), (7, "Face value"),
                      (8, "Face value")]
    assert b"import-errors" in response.content and "token" not in response.context
    assert not OrderBatch.objects.exists() and not RechargeOrder.objects.exists()


def test_wrong_headers_are_reported_on_row_one(distributor, direct_charge_product):
    content = xlsx([["手机号", "面值"], ["13800138000", 25]])

    with pytest.raises(FileRefused) as refused:
        batch_file_check(content=content, filename="x.xlsx", product=direct_charge_product)

    errors = refused.value.errors
    assert {"row": 1, "field": "手机号", "message": "Unknown column “手机号”."} in errors
    assert any(e["row"] == 1 and e["field"] == "充值账号" for e in errors)  # the missing one, named as the file would


@pytest.mark.parametrize("name, content, message", [
    ("batch.xls", b"\xd0\xcf\x11\xe0 old excel", "Only .xlsx and .csv"),
    ("batch.xlsx", b"PK\x03\x04 not really a zip", "not an Excel workbook"),
    ("batch.csv", b"", "The file is empty"),
    ("batch.csv", b"Account\n", "no rows to import"),
])
def test_files_that_cannot_be_read_are_refused_whole(distributor, direct_charge_product, clerk, name, content,
                                                     message):
    with pytest.raises(BatchImportRefused) as refused:
        batch_import(distributor=distributor, product=direct_charge_product, actor=clerk, filename=name,
                     content=content)

    assert message in refused.value.errors[0]["message"]
    assert not OrderBatch.objects.exists()


def test_a_fixed_price_product_refuses_a_different_face_value(distributor, direct_charge_product, clerk):
    content = csv_bytes("充值账号,面值\n13800138000,30\n")

    with pytest.raises(BatchImportRefused) as refused:
        batch_import(distributor=distributor, product=direct_charge_product, actor=clerk, filename="b.csv",
                     content=content)

    assert refused.value.errors == [{"row": 2, "field": "面值",
                                     "message": "This product has a fixed price; leave the face value empty."}]


def test_gb18030_csv_and_open_amounts(distributor, open_amount_product, clerk):
    content = csv_bytes("充值账号,面值\n1000111122223333,100\n1000111122224444,200.50\n", "gb18030")

    batch = batch_import(distributor=distributor, product=open_amount_product, actor=clerk, filename="油卡.CSV",
                         content=content)

    assert list(batch.orders.order_by("pk").values_list("face_value", "price_charged")) == [
        (Decimal("100.00"), Decimal("100.00")), (Decimal("200.50"), Decimal("200.50"))]


def test_the_batch_page_shows_progress_per_status(admin_client, clerk, distributor, direct_charge_product):
    content = csv_bytes("Account\n" + "".join(f"1380000{n:04d}\n" for n in range(5)))
    batch = batch_import(distributor=distributor, product=direct_charge_product, actor=clerk, filename="b.csv",
                         content=content)
    batch_place(batch_id=batch.pk, actor=clerk)

    progress = batch_progress(batch_id=batch.pk)
    page = admin_client.get(reverse("admin:orders_orderbatch_change", args=[batch.pk]))

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
