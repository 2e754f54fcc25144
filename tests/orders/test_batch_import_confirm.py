"""An uploaded batch file waits in its FileJob, not in the session, and is confirmed once, by its uploader.

Given a clerk who uploads a good file, the session holds a few bytes; the file and the checked rows
are in the job. Confirming (the job page's button) queues the import, which checks everything again
and creates the batch whole; a second confirm, even at the same instant, creates nothing. Another
clerk cannot confirm someone else's upload. A file the database refuses by the time it runs (the
product taken off sale, say) creates nothing and the job says why. The file's content is not in the
audit history.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.messages import get_messages
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.urls import reverse
from django.utils import translation
from pghistory.models import Events
from procrastinate.contrib.django.models import ProcrastinateJob

from config.imports import ImportRefused, file_import_check, file_import_confirm, file_import_create, file_import_run
from config.models import FileJob, FileJobKind, FileJobStatus
from config.roles import FINANCE_CLERK
from orders.models import OrderBatch, RechargeOrder
from tests.factories import make_user, sign_in
from tests.orders.batch_support import TAKEN_CODE, deactivate_product, suspend_distributor, take_the_batch_code

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


def job_url(job: FileJob) -> str:
    return reverse("admin:backoffice_filejob_change", args=[job.pk])


def upload(client, distributor, product, content: bytes, **extra) -> FileJob:
    """Upload through the admin, then run the check the worker would run; returns the checked job."""
    response = client.post(IMPORT, {
        "distributor": distributor.pk, "product": product.pk, "file": SimpleUploadedFile("batch.csv", content),
        **extra,
    })
    assert response.status_code == 302, response.context and response.context["form"].errors
    job = FileJob.objects.order_by("-pk").first()
    assert response["Location"] == job_url(job)
    file_import_check(file_job_id=job.pk)
    job.refresh_from_db()
    assert job.can_confirm, job.errors
    return job


def stored_upload(actor, distributor, product, content: bytes) -> FileJob:
    """An upload as the admin stores it, checked."""
    job = file_import_create(
        kind=FileJobKind.ORDER_BATCH_IMPORT, actor=actor, filename="b.csv", content=content, language="en",
        options={"distributor_id": distributor.pk, "product_id": product.pk, "batch_code": "", "remark": ""},
    )
    file_import_check(file_job_id=job.pk)
    return FileJob.objects.get(pk=job.pk)


def confirm(client, job: FileJob):
    return client.post(reverse("admin:backoffice_filejob_confirm", args=[job.pk]))


def last_message(response) -> str:
    return [str(message) for message in get_messages(response.wsgi_request)][-1]


def status(job: FileJob) -> str:
    return FileJob.objects.values_list("status", flat=True).get(pk=job.pk)


@pytest.fixture
def signed_in(client, clerk):
    sign_in(client, clerk)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def session_data(client) -> str:
    return Session.objects.get(session_key=client.session.session_key).session_data


def test_the_file_waits_in_the_job_and_the_session_stays_small(signed_in, clerk, distributor, direct_charge_product):
    content = big_csv()
    assert reverse("admin:orders_orderbatch_import") == IMPORT

    job = upload(signed_in, distributor, direct_charge_product, content, batch_code="BIG1", remark="大批量")
    preview = signed_in.get(job_url(job))

    assert preview.status_code == 200 and 'id="import-preview"' in preview.content.decode()
    assert len(content) > 100_000 and len(session_data(signed_in)) < 2_000
    assert "padding" not in str(dict(signed_in.session))
    stored = FileJob.objects.get(pk=job.pk)
    assert bytes(stored.content) == content and stored.checked_rows  # the file, and the rows as checked
    assert (stored.created_by, stored.original_filename, stored.importable_rows) == (clerk, "batch.csv", ROWS)
    assert stored.options == {"distributor_id": distributor.pk, "product_id": direct_charge_product.pk,
                              "batch_code": "BIG1", "remark": "大批量"}
    assert not OrderBatch.objects.exists()


def test_confirm_creates_the_batch_once(signed_in, distributor, direct_charge_product):
    job = upload(signed_in, distributor, direct_charge_product, big_csv(50), batch_code="ONCE1")

    first = confirm(signed_in, job)
    assert first.status_code == 302 and first["Location"] == job_url(job)
    assert last_message(first).startswith("The import is running")
    file_import_run(file_job_id=job.pk)
    second = confirm(signed_in, job)
    file_import_run(file_job_id=job.pk)  # a run queued twice finds the job done

    batch = OrderBatch.objects.get()
    assert batch.batch_code == "ONCE1" and batch.orders.count() == 50
    job.refresh_from_db()
    assert (job.status, job.created_count, job.options["batch_id"]) == (FileJobStatus.DONE, 50, batch.pk)
    assert second.status_code == 302 and second["Location"] == job_url(job)
    assert last_message(second).startswith("This import cannot be confirmed: it is Done")
    with pytest.raises(ImportRefused):
        file_import_confirm(file_job_id=job.pk, actor=job.created_by)
    assert OrderBatch.objects.count() == 1 and RechargeOrder.objects.count() == 50
    assert ProcrastinateJob.objects.filter(task_name="files.run_import", args={"file_job_id": job.pk}).count() == 1


def test_another_user_cannot_confirm_someone_elses_upload(client, signed_in, clerk, distributor,
                                                          direct_charge_product):
    job = upload(signed_in, distributor, direct_charge_product, big_csv(3))
    other = make_user("other_clerk", FINANCE_CLERK)
    sign_in(client, other)

    page = client.get(job_url(job)).content.decode()
    refused = confirm(client, job)

    assert 'id="confirm-import"' not in page and "Only clerk, who uploaded this file, can confirm its import." in page
    assert refused.status_code == 302 and refused["Location"] == job_url(job)
    assert last_message(refused) == "Only clerk, who uploaded this file, can confirm its import."
    with pytest.raises(ImportRefused) as service_refused:
        file_import_confirm(file_job_id=job.pk, actor=other)
    assert "clerk, who uploaded this file" in " ".join(service_refused.value.messages)
    assert status(job) == FileJobStatus.READY and not OrderBatch.objects.exists()
    # The owner's upload is untouched and still theirs to confirm.
    sign_in(client, clerk)
    assert 'id="confirm-import"' in client.get(job_url(job)).content.decode()
    assert confirm(client, job).status_code == 302 and status(job) == FileJobStatus.RUNNING
    file_import_run(file_job_id=job.pk)
    assert OrderBatch.objects.get().created_by == clerk and RechargeOrder.objects.count() == 3


@pytest.mark.parametrize("change, message", [
    (deactivate_product, "This product is not on sale."),
    (suspend_distributor, "Distributor OD1001 is Suspended: it gets no orders."),
    (take_the_batch_code, "A batch with this code already exists."),
], ids=["product-off-sale", "distributor-suspended", "batch-code-taken"])
def test_a_file_refused_when_it_runs_creates_nothing_and_the_job_says_why(
    signed_in, clerk, distributor, direct_charge_product, change, message
):
    job = upload(signed_in, distributor, direct_charge_product, big_csv(3), batch_code=TAKEN_CODE)
    change(distributor, direct_charge_product, clerk)
    batches, orders = OrderBatch.objects.count(), RechargeOrder.objects.count()

    assert confirm(signed_in, job).status_code == 302 and status(job) == FileJobStatus.RUNNING
    file_import_run(file_job_id=job.pk)

    job.refresh_from_db()
    assert job.status == FileJobStatus.FAILED and job.finished_at is not None and "batch_id" not in job.options
    assert [(e["row"], e["field"]) for e in job.errors] == [(None, "")]
    assert message in job.errors[0]["message"]
    assert (OrderBatch.objects.count(), RechargeOrder.objects.count()) == (batches, orders)
    page = signed_in.get(job_url(job)).content.decode()
    assert 'id="import-errors"' in page and 'id="confirm-import"' not in page and 'id="import-result"' not in page
    with pytest.raises(ImportRefused):
        file_import_confirm(file_job_id=job.pk, actor=clerk)


def test_the_uploaded_file_is_not_in_the_history(clerk, distributor, direct_charge_product):
    recorded = {field.name for model in set(FileJob.pgh_event_models.values()) for field in model._meta.fields}
    assert {"status", "original_filename", "errors"} <= recorded
    assert not {"content", "checked_rows", "options", "processed_rows"} & recorded

    job = stored_upload(clerk, distributor, direct_charge_product, big_csv(20))
    file_import_confirm(file_job_id=job.pk, actor=clerk)
    file_import_run(file_job_id=job.pk)

    events = Events.objects.filter(pgh_obj_model="backoffice.FileJob", pgh_obj_id=str(job.pk))
    assert {event.pgh_data["status"] for event in events} >= {FileJobStatus.QUEUED, FileJobStatus.DONE}
    assert not [event for event in events if "1380" in str(event.pgh_data) or "padding" in str(event.pgh_data)]


@pytest.mark.django_db(transaction=True)
def test_two_confirms_at_the_same_instant_make_one_batch(no_jobs_left_over, distributor, direct_charge_product):
    clerk = make_user("double_clicker", FINANCE_CLERK)
    job = stored_upload(clerk, distributor, direct_charge_product, big_csv(20))
    assert job.can_confirm, job.errors

    def at_once(step) -> list[str]:
        barrier = threading.Barrier(8)
        outcomes: list[str] = []

        def click():
            try:
                barrier.wait()
                outcomes.append(step())
            except ImportRefused:
                outcomes.append("refused")
            finally:
                connections.close_all()

        threads = [threading.Thread(target=click) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return outcomes

    confirms = at_once(lambda: file_import_confirm(file_job_id=job.pk, actor=clerk) and "confirmed")
    # The import queued once; even if it ran eight times at once, it saves once.
    runs = at_once(lambda: file_import_run(file_job_id=job.pk))

    assert sorted(confirms) == ["confirmed"] + ["refused"] * 7
    assert ProcrastinateJob.objects.filter(task_name="files.run_import").count() == 1
    assert runs == [FileJobStatus.DONE] * 8
    assert OrderBatch.objects.count() == 1 and RechargeOrder.objects.count() == 20
    assert FileJob.objects.get(pk=job.pk).created_count == 20
