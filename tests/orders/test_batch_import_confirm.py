"""A previewed batch file waits in the database, not in the session, and is confirmed once, by its uploader.

Given a clerk who uploads a good file, the session holds a few bytes and the page a token; the
file waits in a PendingBatchUpload row. Confirming creates the batch and uses the row up, so a
second click (even at the same instant) creates nothing; another clerk holding the token cannot
confirm it, and neither can its owner once it is older than ORDER_BATCH_PREVIEW_MINUTES. Old and
replaced uploads are deleted, and the file's content is in neither the admin nor the audit history.
"""

from __future__ import annotations

import datetime
import threading

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.messages import get_messages
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse
from django.utils import timezone, translation

from config.roles import FINANCE_CLERK
from orders.batch_uploads import UploadUnavailable, batch_upload_confirm, batch_upload_store, batch_uploads_purge
from orders.models import OrderBatch, PendingBatchUpload, RechargeOrder
from tests.factories import make_user, sign_in

pytestmark = pytest.mark.django_db

IMPORT = "/admin/orders/orderbatch/import/"
ROWS = 3000  # a file of a realistic size: the old session carried it whole, base64 and all


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def big_csv(rows: int = ROWS) -> bytes:
    return ("Account,Attach values\n" + "".join(f"1380{n:07d},note-{n:06d}-padding-padding\n"
                                                 for n in range(rows))).encode()


def preview(client, distributor, product, content: bytes, **extra):
    response = client.post(IMPORT, {
        "distributor": distributor.pk, "product": product.pk, "file": SimpleUploadedFile("batch.csv", content),
        **extra,
    })
    assert response.status_code == 200 and "import-preview" in response.content.decode(), response.context.get("errors")
    return response


def confirm(client, token: str):
    return client.post(IMPORT, {"token": token})


def last_message(response) -> str:
    return [str(message) for message in get_messages(response.wsgi_request)][-1]


@pytest.fixture
def signed_in(client, clerk):
    sign_in(client, clerk)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def test_the_session_holds_no_file_after_a_preview(signed_in, clerk, distributor, direct_charge_product):
    content = big_csv()
    assert reverse("admin:orders_orderbatch_import") == IMPORT

    response = preview(signed_in, distributor, direct_charge_product, content, batch_code="BIG1", remark="大批量")

    stored = Session.objects.get(session_key=signed_in.session.session_key).session_data
    assert len(content) > 100_000 and len(stored) < 2_000
    assert "content" not in str(dict(signed_in.session))
    pending = PendingBatchUpload.objects.get()
    assert bytes(pending.content) == content and pending.token == response.context["token"]
    assert (pending.uploaded_by, pending.distributor, pending.product, pending.batch_code, pending.remark,
            pending.filename) == (clerk, distributor, direct_charge_product, "BIG1", "大批量", "batch.csv")
    assert pending.token not in str(dict(signed_in.session))  # the page posts it back, the session need not hold it
    assert not OrderBatch.objects.exists()


def test_confirm_creates_the_batch_once_and_uses_the_upload_up(signed_in, distributor, direct_charge_product):
    token = preview(signed_in, distributor, direct_charge_product, big_csv(50), batch_code="ONCE1").context["token"]

    first = confirm(signed_in, token)
    second = confirm(signed_in, token)

    batch = OrderBatch.objects.get()
    assert first.status_code == 302 and first["Location"].endswith(f"/{batch.pk}/change/")
    assert batch.batch_code == "ONCE1" and batch.orders.count() == 50
    assert second.status_code == 302 and second["Location"] == IMPORT
    assert last_message(second) == "This preview was already used or has expired; upload the file again."
    assert OrderBatch.objects.count() == 1 and RechargeOrder.objects.count() == 50
    assert not PendingBatchUpload.objects.exists()


def test_another_user_cannot_confirm_someone_elses_preview(client, signed_in, clerk, distributor,
                                                           direct_charge_product):
    token = preview(signed_in, distributor, direct_charge_product, big_csv(3)).context["token"]
    other = make_user("other_clerk", FINANCE_CLERK)
    sign_in(client, other)
    refused = confirm(client, token)

    assert refused.status_code == 302 and refused["Location"] == IMPORT
    assert last_message(refused) == "This preview was made by another user; upload the file yourself."
    assert not OrderBatch.objects.exists()
    with pytest.raises(UploadUnavailable):
        batch_upload_confirm(token=token, actor=other)
    # The owner's preview is untouched and still theirs to confirm.
    sign_in(client, clerk)
    assert confirm(client, token).status_code == 302 and OrderBatch.objects.get().created_by == clerk


def test_an_expired_preview_is_refused_and_deleted(settings, signed_in, distributor, direct_charge_product):
    settings.ORDER_BATCH_PREVIEW_MINUTES = 60
    token = preview(signed_in, distributor, direct_charge_product, big_csv(3)).context["token"]
    PendingBatchUpload.objects.update(created_at=timezone.now() - datetime.timedelta(minutes=61))

    refused = confirm(signed_in, token)

    assert last_message(refused) == "This preview is older than 60 minutes; upload the file again."
    assert not OrderBatch.objects.exists() and not PendingBatchUpload.objects.exists()


def test_a_new_upload_replaces_the_clerks_earlier_one_and_old_ones_are_deleted(
    signed_in, distributor, direct_charge_product
):
    def stored_by(username: str):
        return batch_upload_store(actor=make_user(username, FINANCE_CLERK), distributor=distributor,
                                  product=direct_charge_product, filename="b.csv", content=big_csv(2))

    waiting = stored_by("slow_clerk")
    forgotten = stored_by("gone_clerk")
    PendingBatchUpload.objects.filter(pk=forgotten.pk).update(created_at=timezone.now() - datetime.timedelta(days=2))

    first = preview(signed_in, distributor, direct_charge_product, big_csv(3)).context["token"]
    second = preview(signed_in, distributor, direct_charge_product, big_csv(4)).context["token"]

    # The clerk's first preview is gone, and so is the expired one; the other clerk's recent one waits.
    assert set(PendingBatchUpload.objects.values_list("token", flat=True)) == {second, waiting.token}
    replaced = confirm(signed_in, first)
    assert last_message(replaced) == "This preview was already used or has expired; upload the file again."
    assert confirm(signed_in, second).status_code == 302 and OrderBatch.objects.get().orders.count() == 4
    assert batch_uploads_purge() == 0


def test_a_file_refused_on_confirm_creates_nothing_and_is_used_up(signed_in, distributor, direct_charge_product):
    token = preview(signed_in, distributor, direct_charge_product, big_csv(3)).context["token"]
    direct_charge_product.active = False
    direct_charge_product.save()

    response = confirm(signed_in, token)

    assert not OrderBatch.objects.exists() and not RechargeOrder.objects.exists()
    assert not PendingBatchUpload.objects.exists()
    assert response.status_code in (200, 302)


def test_the_upload_is_in_neither_the_admin_nor_the_history():
    tracked = {model.pgh_tracked_model for model in apps.get_models() if hasattr(model, "pgh_tracked_model")}

    assert RechargeOrder in tracked and PendingBatchUpload not in tracked
    assert PendingBatchUpload not in admin.site._registry


@pytest.mark.django_db(transaction=True)
def test_two_confirms_at_the_same_instant_make_one_batch(distributor, direct_charge_product):
    clerk = make_user("double_clicker", FINANCE_CLERK)
    upload = batch_upload_store(actor=clerk, distributor=distributor, product=direct_charge_product,
                                filename="b.csv", content=big_csv(20))
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def click():
        try:
            barrier.wait()
            batch_upload_confirm(token=upload.token, actor=clerk)
            outcomes.append("created")
        except UploadUnavailable:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created"] + ["refused"] * 7
    assert OrderBatch.objects.count() == 1 and RechargeOrder.objects.count() == 20
    assert not PendingBatchUpload.objects.exists()
