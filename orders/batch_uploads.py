"""A batch file between its preview and its confirmation, kept in the database (PendingBatchUpload).

The preview stores the upload and hands the page a random token; the confirmation posts the token
back and takes the upload once: it is deleted in the same transaction that creates the batch, under
a row lock, so a second click (or a second tab) finds nothing and creates nothing. Only the clerk
who uploaded a file can confirm it, and only for ORDER_BATCH_PREVIEW_MINUTES. A new upload deletes
the same clerk's earlier one and every expired one, so nothing is left behind for long.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from distributors.models import Distributor
from orders.models import OrderBatch, PendingBatchUpload, Product


class UploadUnavailable(Exception):
    """The preview cannot be confirmed (already used, expired, or another user's): upload the file again."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _max_age() -> timedelta:
    return timedelta(minutes=settings.ORDER_BATCH_PREVIEW_MINUTES)


def batch_uploads_purge() -> int:
    """Delete the uploads nobody confirmed in time; returns how many."""
    deleted, _per_model = PendingBatchUpload.objects.filter(created_at__lt=timezone.now() - _max_age()).delete()
    return deleted


@transaction.atomic
def batch_upload_store(
    *,
    actor,
    distributor: Distributor,
    product: Product,
    filename: str,
    content: bytes,
    batch_code: str = "",
    remark: str = "",
) -> PendingBatchUpload:
    """Keep a checked file until its uploader confirms it; their earlier upload can no longer be confirmed."""
    batch_uploads_purge()
    PendingBatchUpload.objects.filter(uploaded_by=actor).delete()
    return PendingBatchUpload.objects.create(
        uploaded_by=actor, distributor=distributor, product=product, filename=filename, content=content,
        batch_code=batch_code, remark=remark,
    )


def batch_upload_confirm(*, token: str, actor) -> OrderBatch:
    """Create the batch from the upload `token` names, once.

    Raises UploadUnavailable if there is no such upload (already confirmed, replaced or purged), it
    is another user's, or it is too old; BatchImportRefused or ValidationError if the file, checked
    again, no longer makes a batch. Either way the upload is used up, except another user's.
    """
    from orders.services import batch_import

    refused: Exception | None = None
    batch = None
    with transaction.atomic():
        upload = PendingBatchUpload.objects.select_for_update().filter(token=token).first() if token else None
        if upload is None:
            raise UploadUnavailable(_("This preview was already used or has expired; upload the file again."))
        if upload.uploaded_by_id != actor.pk:
            raise UploadUnavailable(_("This preview was made by another user; upload the file yourself."))
        if upload.created_at < timezone.now() - _max_age():
            refused = UploadUnavailable(
                _("This preview is older than %(minutes)d minutes; upload the file again.")
                % {"minutes": settings.ORDER_BATCH_PREVIEW_MINUTES}
            )
        else:
            try:
                with transaction.atomic():
                    batch = batch_import(
                        distributor=upload.distributor, product=upload.product, actor=actor,
                        filename=upload.filename, content=bytes(upload.content), batch_code=upload.batch_code,
                        remark=upload.remark,
                    )
            except ValidationError as err:  # BatchImportRefused is one
                refused = err
        upload.delete()
    if refused is not None:
        raise refused
    return batch
