"""Rows that belong to no single business app: the file jobs (every import and every large export)."""

from __future__ import annotations

import pghistory
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class FileJobKind(models.TextChoices):
    FUND_TRANSACTION_IMPORT = "fund_transaction_import", _("Fund transaction import")
    ORDER_BATCH_IMPORT = "order_batch_import", _("Batch direct charge import")
    FUND_TRANSACTION_EXPORT = "fund_transaction_export", _("Fund transaction export")
    ERP_SYNC_EXPORT = "erp_sync_export", _("ERP sync export")


IMPORT_KINDS = frozenset({FileJobKind.FUND_TRANSACTION_IMPORT, FileJobKind.ORDER_BATCH_IMPORT})


class FileFormat(models.TextChoices):
    XLSX = "xlsx", _("Excel workbook (.xlsx)")
    CSV = "csv", _("CSV text (.csv)")


class FileJobStatus(models.TextChoices):
    """An import goes QUEUED -> CHECKING -> READY -> RUNNING -> DONE; an export QUEUED -> RUNNING -> DONE.

    Either may end FAILED instead; DONE and FAILED are final.
    """

    QUEUED = "queued", _("Waiting")
    CHECKING = "checking", _("Checking")
    READY = "ready", _("Checked")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


RUNNING_STATUSES = frozenset({FileJobStatus.QUEUED, FileJobStatus.CHECKING, FileJobStatus.RUNNING})


# The files, the checked rows, the options (an export's selection) and the progress counter stay
# out of the history: a copy of up to IMPORT_MAX_FILE_BYTES per event, or an event per progress
# tick, would bury what an auditor needs: who imported or exported what, when, and how it ended.
@pghistory.track(exclude=["content", "checked_rows", "options", "processed_rows"])
class FileJob(models.Model):
    """One file a background job works through: an upload checked then imported, or an export written.

    The files are kept in the database, not on disk: workers may run on other machines and the
    database is the one store they all share; files are small (IMPORT_MAX_FILE_BYTES), and an
    upload stays next to its job as the record of what was imported.
    """

    kind = models.CharField(_("kind"), max_length=32, choices=FileJobKind.choices)
    status = models.CharField(_("status"), max_length=16, choices=FileJobStatus.choices, default=FileJobStatus.QUEUED)
    original_filename = models.CharField(_("file name"), max_length=255)
    file_format = models.CharField(_("format"), max_length=8, choices=FileFormat.choices)
    language = models.CharField(
        _("language"), max_length=16, default="zh-hans", help_text=_("Errors and exports are written in this language.")
    )
    # What the job works on besides its file: an export's selected ids, a batch's distributor and product.
    options = models.JSONField(_("options"), default=dict, blank=True)
    # An import's upload, or an export's result once it is done.
    content = models.BinaryField(_("file content"), null=True, editable=False)
    # The rows the check found valid, converted (compressed JSON): the import saves exactly what
    # the clerk saw in the preview, without reading the file a second time.
    checked_rows = models.BinaryField(_("checked rows"), editable=False, default=b"")
    summary = models.JSONField(_("summary"), default=dict, blank=True,
                               help_text=_("What the check found, as the preview shows it (a batch's total price)."))
    total_rows = models.PositiveIntegerField(_("rows"), default=0)
    processed_rows = models.PositiveIntegerField(_("rows processed"), default=0)
    importable_rows = models.PositiveIntegerField(_("rows to create"), default=0)
    created_count = models.PositiveIntegerField(_("rows created"), default=0)
    skipped_count = models.PositiveIntegerField(_("rows already imported"), default=0)
    errors = models.JSONField(_("errors"), default=list, blank=True, help_text=_("[{row, field, message}, ...]"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("created by")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("file job")
        verbose_name_plural = _("imports and exports")
        ordering = ["-id"]
        indexes = [models.Index(fields=["kind", "-id"], name="filejob_kind_id")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.original_filename}"

    @property
    def is_import(self) -> bool:
        return self.kind in IMPORT_KINDS

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING_STATUSES

    @property
    def can_confirm(self) -> bool:
        return self.is_import and self.status == FileJobStatus.READY and not self.errors and self.importable_rows > 0
