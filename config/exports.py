"""Large exports as file jobs: the selection is recorded, a background job writes the file.

What a kind of export writes is its business app's (EXPORT_WRITERS); the job's claim, progress
and ending are the same for every export (config.file_jobs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone, translation
from django.utils.module_loading import import_string
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from config.file_jobs import file_job_claim, file_job_export_done, file_job_fail, file_job_status, progress_writer
from config.models import FileJob, FileJobKind, FileJobStatus

logger = logging.getLogger(__name__)

# writer(job, progress) -> the file's bytes, in the job's language and format
EXPORT_WRITERS = {
    FileJobKind.FUND_TRANSACTION_EXPORT: "distributors.exports.fund_transactions_file",
    FileJobKind.ERP_SYNC_EXPORT: "distributors.exports.erp_syncs_file",
}
FILE_NAMES = {
    FileJobKind.FUND_TRANSACTION_EXPORT: "fund-transactions",
    FileJobKind.ERP_SYNC_EXPORT: "erp-syncs",
}


def file_export_create(*, kind: str, file_format: str, selected_ids: Sequence[int], total_rows: int, actor) -> FileJob:
    """Record what to export and queue the job, in one transaction."""
    from config.tasks import run_file_export

    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    with transaction.atomic():
        job = FileJob.objects.create(
            kind=kind, file_format=file_format, original_filename=f"{FILE_NAMES[kind]}-{stamp}.{file_format}",
            options={"selected_ids": list(selected_ids)}, total_rows=total_rows, created_by=actor,
            language=get_language() or "zh-hans",
        )
        run_file_export.defer(file_job_id=job.pk)
    return job


def file_export_run(*, file_job_id: int) -> str:
    """Write the file in the job's language, counting rows as they go, and keep it on the job."""
    if not file_job_claim(file_job_id, from_status=FileJobStatus.QUEUED, to_status=FileJobStatus.RUNNING):
        return file_job_status(file_job_id)
    job = FileJob.objects.defer("content").get(pk=file_job_id)
    writer = import_string(EXPORT_WRITERS[job.kind])
    with translation.override(job.language):
        try:
            content = writer(job, progress_writer(job.pk))
        except Exception:  # the clerk sees that it failed; the log has the traceback
            logger.exception("Export %s failed", job.pk)
            return file_job_fail(job.pk, [{"row": None, "field": "", "message": _(
                "The export failed; nothing was written. Try again, or ask for help if it fails again."
            )}])
    return file_job_export_done(job.pk, content)
