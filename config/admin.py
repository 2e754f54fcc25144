from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from config.models import ExportJob, ExportStatus


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    """Large exports: each clerk sees their own; the page refreshes itself while the job runs."""

    list_display = ["id", "kind", "file_format", "status", "progress", "created_by", "created_at", "download"]
    list_filter = ["status", "kind"]
    fields = ["kind", "file_format", "status", "progress", "error", "created_by", "created_at", "finished_at",
              "download"]
    readonly_fields = fields
    change_form_template = "admin/backoffice/exportjob/change_form.html"

    def get_queryset(self, request):
        queryset = super().get_queryset(request).defer("content", "selected_ids")
        return queryset if request.user.is_superuser else queryset.filter(created_by=request.user)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    @admin.display(description=_("progress"))
    def progress(self, job: ExportJob) -> str:
        if job.status == ExportStatus.DONE:
            return f"{job.total_rows} / {job.total_rows}"
        return f"{job.processed_rows} / {job.total_rows}"

    @admin.display(description=_("file"))
    def download(self, job: ExportJob):
        if job.status != ExportStatus.DONE:
            return "-"
        return format_html('<a href="{}">{}</a>', reverse("admin:backoffice_exportjob_download", args=[job.pk]),
                           job.filename)

    def get_urls(self):
        return [
            path("<int:job_id>/download/", self.admin_site.admin_view(self.download_view),
                 name="backoffice_exportjob_download"),
            *super().get_urls(),
        ]

    def download_view(self, request, job_id: int):
        job = get_object_or_404(ExportJob, pk=job_id, status=ExportStatus.DONE)
        if job.created_by_id != request.user.pk and not request.user.is_superuser:
            raise PermissionDenied
        content_type = ("text/csv; charset=utf-8" if job.file_format == "csv"
                        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        response = HttpResponse(bytes(job.content), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{job.filename}"'
        return response
