"""The life of a file job (config.models.FileJob): claiming it, its progress, how it ends.

Every import and every large export goes through these, so a job is claimed the same way
(one conditional UPDATE: two workers, or a job queued twice, never both run it), counts its
progress the same way and fails the same way, with its errors in the clerk's language.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.db.models import F
from django.utils import timezone

from config.models import FileJob, FileJobStatus
from config.routers import PROGRESS_ALIAS

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


def file_job_claim(job_id: int, *, from_status: str, to_status: str, **changes) -> bool:
    """Move the job from `from_status` to `to_status` if it is still there; True if this caller did."""
    return bool(
        FileJob.objects.filter(pk=job_id, status=from_status).update(status=to_status, updated_at=timezone.now(), **changes)
    )


def file_job_status(job_id: int) -> str:
    return FileJob.objects.values_list("status", flat=True).get(pk=job_id)


def progress_writer(job_id: int) -> Progress:
    """Record how many rows are done, on the progress connection.

    That connection commits at once, so the progress page sees the count while the job's own
    transaction (an import saves all its rows in one) is still open.
    """

    def report(rows: int) -> None:
        FileJob.objects.using(PROGRESS_ALIAS).filter(pk=job_id).update(processed_rows=rows)

    return report


def counting(rows: Iterable, progress: Progress, every: int) -> Iterable:
    """The same rows, reporting progress every `every` rows."""
    done = 0
    for row in rows:
        yield row
        done += 1
        if done % every == 0:
            progress(done)


def file_job_fail(job_id: int, errors: list[dict]) -> str:
    """FAILED with these errors; whatever the check kept is dropped, the upload stays as the record."""
    FileJob.objects.filter(pk=job_id).update(
        status=FileJobStatus.FAILED, errors=errors, importable_rows=0, checked_rows=b"",
        finished_at=timezone.now(), updated_at=timezone.now(),
    )
    return FileJobStatus.FAILED


def file_job_export_done(job_id: int, content: bytes) -> str:
    FileJob.objects.filter(pk=job_id).update(
        status=FileJobStatus.DONE, content=content, processed_rows=F("total_rows"),
        finished_at=timezone.now(), updated_at=timezone.now(),
    )
    return FileJobStatus.DONE


def file_job_without_files(job_id: int) -> FileJob:
    return FileJob.objects.defer("content", "checked_rows").get(pk=job_id)


def file_job_content(job_id: int) -> bytes:
    return bytes(FileJob.objects.values_list("content", flat=True).get(pk=job_id))
