"""The fund transaction import pages: upload, the preview that is also the progress page, templates.

Anyone who may add fund transactions may import them (distributors.add_fundtransaction): an
import only records drafts, which still go through submission and approval.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from distributors.imports import FileRefused, ImportRefused, format_for_filename, import_job_confirm, import_job_create
from distributors.models import ImportJob
from distributors.resources import TEMPLATE_LANGUAGES, XLSX_CONTENT_TYPE, template_bytes

IMPORT_PERMISSION = "distributors.add_fundtransaction"
ERRORS_PER_PAGE = 200


class UploadForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("file"),
        help_text=gettext_lazy("An .xlsx workbook or a .csv file with the template's column headers."),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_FILE_BYTES:
            raise forms.ValidationError(
                _("The file is larger than %(limit)d MB; split it into smaller files.")
                % {"limit": settings.IMPORT_MAX_FILE_BYTES // (1024 * 1024)}
            )
        try:
            format_for_filename(upload.name)
        except FileRefused as refused:
            raise forms.ValidationError(str(refused)) from None
        return upload


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "id", "original_filename", "status", "total_rows", "created_count", "skipped_count", "error_count",
        "created_by", "created_at",
    ]
    list_filter = ["status", ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["created_by"]
    search_fields = ["original_filename"]
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("content", "checked_rows")

    @admin.display(description=gettext_lazy("errors"))
    def error_count(self, job: ImportJob) -> int:
        return len(job.errors)

    # An import is changed only by its services; the add page is the upload page.
    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(IMPORT_PERMISSION) or super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return request.user.has_perm(IMPORT_PERMISSION)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("template/<str:headers>/", view(self.template_view), name="distributors_importjob_template"),
            path("<int:object_id>/confirm/", view(self.confirm_view), name="distributors_importjob_confirm"),
            *super().get_urls(),
        ]

    def _context(self, request, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "templates": [(language, reverse("admin:distributors_importjob_template", args=[language]))
                          for language in TEMPLATE_LANGUAGES],
            **extra,
        }

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = import_job_create(
                    actor=request.user, filename=upload.name, content=upload.read(), language=get_language()
                )
            except FileRefused as refused:
                form.add_error("file", str(refused))
            else:
                return HttpResponseRedirect(reverse("admin:distributors_importjob_change", args=[job.pk]))
        context = self._context(request, title=_("Import fund transactions from Excel"), form=form)
        return TemplateResponse(request, "admin/distributors/importjob/upload.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The preview: counts, progress while a job runs, and every bad row."""
        job = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        page = Paginator(job.errors, ERRORS_PER_PAGE).get_page(request.GET.get("page"))
        context = self._context(
            request,
            title=_("Import %(job)s") % {"job": job},
            job=job,
            errors_page=page,
            error_rows=len({error["row"] for error in job.errors}),
            can_confirm=job.can_confirm and request.user.has_perm(IMPORT_PERMISSION),
            refresh_seconds=2 if job.is_running else None,
            original=job,
        )
        return TemplateResponse(request, "admin/distributors/importjob/preview.html", context)

    def confirm_view(self, request, object_id):
        if request.method != "POST" or not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        try:
            import_job_confirm(import_job_id=object_id, actor=request.user)
        except ImportJob.DoesNotExist:
            raise Http404 from None
        except ImportRefused as refused:
            self.message_user(request, " ".join(refused.messages), messages.ERROR)
        else:
            self.message_user(
                request, _("The import is running; this page shows how far it is. You may leave it and come back."),
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:distributors_importjob_change", args=[object_id]))

    def template_view(self, request, headers):
        if headers not in TEMPLATE_LANGUAGES:
            raise Http404
        if not self.has_add_permission(request):
            raise PermissionDenied
        response = HttpResponse(template_bytes(headers=headers), content_type=XLSX_CONTENT_TYPE)
        filename = "fund-transactions-template-zh.xlsx" if headers == "zh" else "fund-transactions-template-en.xlsx"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
