from __future__ import annotations

from decimal import Decimal

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from config.imports import IMPORT_CLASSES, ImportRefused, file_import_confirm, spreadsheet_import, unpack_rows
from config.models import IMPORT_KINDS, FileJob, FileJobKind, FileJobStatus

ERRORS_PER_PAGE = 200
PREVIEW_ROWS = 50
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
# Who may see a kind of job besides those who may see every job (backoffice.view_filejob):
# an import's uploaders, an export's readers.
KIND_PERMISSIONS = {
    FileJobKind.FUND_TRANSACTION_IMPORT: "distributors.add_fundtransaction",
    FileJobKind.ORDER_BATCH_IMPORT: "orders.add_orderbatch",
    FileJobKind.FUND_TRANSACTION_EXPORT: "distributors.view_fundtransaction",
    FileJobKind.ERP_SYNC_EXPORT: "distributors.view_erpsync",
}


@admin.register(FileJob)
class FileJobAdmin(admin.ModelAdmin):
    """Imports and large exports: each job's page is its preview and its progress, refreshing while it runs.

    A job is changed only by its services: an import is confirmed from its page by its uploader,
    an export's file is downloaded by whoever asked for it.
    """

    list_display = ["id", "kind", "original_filename", "status", "progress", "created_count", "error_count",
                    "created_by", "created_at"]
    list_filter = ["kind", "status", ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["created_by"]
    search_fields = ["original_filename"]
    show_full_result_count = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request).defer("content", "checked_rows", "options")
        if request.user.has_perm("backoffice.view_filejob"):
            return queryset
        # Imports of the kinds one may upload, anyone's; exports, one's own (they hold what one could read).
        kinds = self._kinds(request)
        return queryset.filter(Q(kind__in=IMPORT_KINDS & set(kinds)) | Q(kind__in=kinds, created_by=request.user))

    @staticmethod
    def _kinds(request) -> list[str]:
        return [kind for kind, permission in KIND_PERMISSIONS.items() if request.user.has_perm(permission)]

    def has_view_permission(self, request, obj=None):
        if request.user.has_perm("backoffice.view_filejob"):
            return True
        kinds = self._kinds(request)
        return bool(kinds) and (obj is None or obj.kind in kinds)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False  # uploads start from their own pages (fund transactions, batches)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, job: FileJob) -> str:
        if job.status == FileJobStatus.DONE:
            return f"{job.total_rows} / {job.total_rows}"
        return f"{job.processed_rows} / {job.total_rows}" if job.total_rows else str(job.processed_rows)

    @admin.display(description=gettext_lazy("errors"))
    def error_count(self, job: FileJob) -> int:
        return len(job.errors)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:object_id>/confirm/", view(self.confirm_view), name="backoffice_filejob_confirm"),
            path("<int:object_id>/download/", view(self.download_view), name="backoffice_filejob_download"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The job's page: counts, progress while it runs, every bad row, and what to do next."""
        # One query: the visible jobs (get_queryset), with what the page shows that the list defers.
        job = self.get_queryset(request).defer(None).defer("content").filter(pk=object_id).first()
        if job is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        may_confirm = (job.can_confirm and job.created_by_id == request.user.pk
                       and request.user.has_perm(spreadsheet_import(job.kind).permission))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("%(kind)s %(job)s") % {"kind": job.get_kind_display(), "job": job},
            "job": job,
            "original": job,
            "errors_page": Paginator(job.errors, ERRORS_PER_PAGE).get_page(request.GET.get("page")),
            "error_rows": len({error["row"] for error in job.errors}),
            "can_confirm": may_confirm,
            "can_download": (not job.is_import and job.status == FileJobStatus.DONE
                             and job.created_by_id == request.user.pk),
            "refresh_seconds": 2 if job.is_running else None,
            **self._kind_context(job),
        }
        return TemplateResponse(request, "admin/backoffice/filejob/detail.html", context)

    def _kind_context(self, job: FileJob) -> dict:
        if job.kind == FileJobKind.FUND_TRANSACTION_IMPORT:
            return {"upload_url": reverse("admin:distributors_fundtransaction_import"),
                    "back_url": reverse("admin:distributors_fundtransaction_changelist")}
        if job.kind == FileJobKind.ORDER_BATCH_IMPORT:
            return self._batch_context(job)
        return {"back_url": reverse("admin:backoffice_filejob_changelist")}

    def _batch_context(self, job: FileJob) -> dict:
        from distributors.models import Account, AccountKind, Distributor
        from orders.models import Product

        context = {
            "upload_url": reverse("admin:orders_orderbatch_import"),
            "back_url": reverse("admin:orders_orderbatch_changelist"),
            "distributor": Distributor.objects.filter(pk=job.options.get("distributor_id")).first(),
            "product": Product.objects.filter(pk=job.options.get("product_id")).first(),
        }
        if job.options.get("batch_id"):
            context["result_url"] = reverse("admin:orders_orderbatch_change", args=[job.options["batch_id"]])
        if job.status == FileJobStatus.READY and job.checked_rows:
            spec = spreadsheet_import(job.kind)
            rows = unpack_rows(bytes(job.checked_rows), spec.row_class).rows
            context["preview_rows"] = rows[:PREVIEW_ROWS]
            context["available"] = (Account.objects.filter(distributor=job.options["distributor_id"],
                                                           kind=AccountKind.PREPAID)
                                    .values_list("balance", flat=True).first())
            context["total_price"] = Decimal(job.summary.get("total_price", "0"))
            context["balance_short"] = context["available"] is not None and context["available"] < context["total_price"]
        return context

    def confirm_view(self, request, object_id):
        if request.method != "POST":
            raise PermissionDenied
        job = FileJob.objects.filter(pk=object_id).only("kind").first()
        kinds = [kind for kind in IMPORT_CLASSES if request.user.has_perm(KIND_PERMISSIONS[kind])]
        if not kinds:
            raise PermissionDenied
        if job is None:
            raise Http404
        if job.kind not in kinds:
            raise PermissionDenied
        try:
            file_import_confirm(file_job_id=object_id, actor=request.user)
        except FileJob.DoesNotExist:
            raise Http404 from None
        except ImportRefused as refused:
            self.message_user(request, " ".join(refused.messages), messages.ERROR)
        else:
            self.message_user(
                request, _("The import is running; this page shows how far it is. You may leave it and come back."),
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:backoffice_filejob_change", args=[object_id]))

    def download_view(self, request, object_id: int):
        job = get_object_or_404(FileJob, pk=object_id, status=FileJobStatus.DONE)
        if job.is_import or job.created_by_id != request.user.pk:
            # An export holds what its maker could read: it is theirs to download.
            raise PermissionDenied
        response = HttpResponse(bytes(job.content), content_type=CONTENT_TYPES[job.file_format])
        response["Content-Disposition"] = f'attachment; filename="{job.original_filename}"'
        return response

    @admin.display(description=gettext_lazy("file"))
    def download(self, job: FileJob):
        if job.is_import or job.status != FileJobStatus.DONE:
            return "-"
        return format_html('<a href="{}">{}</a>', reverse("admin:backoffice_filejob_download", args=[job.pk]),
                           job.original_filename)
