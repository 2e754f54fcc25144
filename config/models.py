"""Rows that belong to no single business app."""

from __future__ import annotations

import pghistory
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _


class ExportKind(models.TextChoices):
    FUND_TRANSACTIONS = "fund_transactions", _("Fund transactions")
    ERP_SYNCS = "erp_syncs", _("ERP sync results")


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


# The file, the selection and the progress counter stay out of the history: who exported what,
# when, and how it ended is what an auditor needs.
@pghistory.track(exclude=["content", "selected_ids", "processed_rows"])
class ExportJob(models.Model):
    """A large export made by a background job; the clerk watches its progress or comes back later."""

    kind = models.CharField(_("what"), max_length=24, choices=ExportKind.choices)
    file_format = models.CharField(_("format"), max_length=8)
    status = models.CharField(_("status"), max_length=8, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    selected_ids = ArrayField(models.BigIntegerField(), verbose_name=_("selected rows"))
    total_rows = models.PositiveIntegerField(_("rows"), default=0)
    processed_rows = models.PositiveIntegerField(_("rows written"), default=0)
    language = models.CharField(_("language"), max_length=16, default="zh-hans")
    content = models.BinaryField(_("file"), null=True, editable=False)
    error = models.TextField(_("error"), blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
                                   verbose_name=_("created by"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("export")
        verbose_name_plural = _("exports")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def filename(self) -> str:
        stamp = self.created_at.strftime("%Y%m%d-%H%M%S") if self.created_at else ""
        return f"{self.kind.replace('_', '-')}-{stamp}.{self.file_format}"
