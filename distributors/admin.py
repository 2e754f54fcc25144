from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from config.admin_actions import confirmed_action
from config.admin_mixins import ReadOnlyAdminMixin, ReadOnlyInlineMixin
from config.admin_paging import LargeTableAdminMixin, RelatedCodeSearchMixin
from config.imports import file_import_create
from config.models import FileJobKind
from config.spreadsheet_import import FileRefused
from config.spreadsheets import xlsx_bytes
from distributors.erp_sync import erp_sync_resolve, erp_sync_retry
from distributors.exports import erp_syncs_export, fund_transactions_export, large_export_create
from distributors.forms import FundTransactionForm, FundTransactionImportForm, StatementForm
from distributors.fund_transactions import (
    FUND_TRANSACTION_EDITABLE_FIELDS,
    fund_transaction_approve,
    fund_transaction_reject,
    fund_transaction_reverse,
    fund_transaction_update,
    fund_transactions_submit,
)
from distributors.imports import TEMPLATE_LANGUAGES
from distributors.models import (
    Account,
    BalanceCheck,
    Distributor,
    DistributorStatus,
    ErpSync,
    FundTransaction,
    FundTransactionStatus,
    LedgerEntry,
    SyncStatus,
)
from distributors.resources import XLSX_CONTENT_TYPE, template_bytes
from distributors.selectors import account_statement
from distributors.services import distributor_open_accounts, distributors_set_status


class AccountInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = Account
    fields = ["kind", "currency", "balance", "updated_at"]


@admin.register(Distributor)
class DistributorAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "environment", "status", "kept_in_best_gerp", "kept_in_wdt", "prepaid_balance"]
    list_filter = ["status", "environment", "kept_in_best_gerp", "kept_in_wdt"]
    search_fields = ["=code", "^code", "name"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [AccountInline]
    fieldsets = [
        (None, {"fields": ["code", "name", "environment", "status"]}),
        (gettext_lazy("Contact"), {"fields": ["contact_name", "contact_phone", "contact_email"]}),
        (
            gettext_lazy("ERP systems"),
            {
                "fields": [
                    "kept_in_best_gerp",
                    "best_gerp_customer_name",
                    "best_gerp_account",
                    "best_gerp_merchant",
                    "kept_in_wdt",
                    "wdt_nick_no",
                    "wdt_nick_name",
                    "wdt_merchant",
                ]
            },
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]
    change_form_template = "admin/distributors/distributor/change_form.html"
    actions = ["suspend", "reactivate"]

    @admin.action(description=gettext_lazy("Suspend selected distributors"), permissions=["change"])
    def suspend(self, request, queryset):
        count = distributors_set_status(distributors=queryset, status=DistributorStatus.SUSPENDED)
        self.message_user(request, _("%(count)d distributors suspended.") % {"count": count}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Reactivate selected distributors"), permissions=["change"])
    def reactivate(self, request, queryset):
        count = distributors_set_status(distributors=queryset, status=DistributorStatus.ACTIVE)
        self.message_user(request, _("%(count)d distributors reactivated.") % {"count": count}, messages.SUCCESS)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("accounts")

    @admin.display(description=gettext_lazy("prepaid balance"))
    def prepaid_balance(self, distributor: Distributor):
        return next((a.balance for a in distributor.accounts.all() if a.kind == "prepaid"), None)

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            distributor_open_accounts(distributor=obj)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/statement/",
                self.admin_site.admin_view(self.statement_view),
                name="distributors_distributor_statement",
            ),
            *super().get_urls(),
        ]

    def statement_view(self, request, object_id):
        if not request.user.has_perm("distributors.export_statement"):
            raise PermissionDenied
        distributor = get_object_or_404(Distributor, pk=object_id)
        form = StatementForm(request.GET)
        statement = None
        if form.is_valid():
            account = distributor_open_accounts(distributor=distributor)
            account = next(a for a in account if a.kind == form.cleaned_data["account"])
            statement = account_statement(
                account=account, start=form.cleaned_data["start"], end=form.cleaned_data["end"]
            )
            if request.GET.get("format") == "xlsx":
                return self._statement_xlsx(distributor, statement)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Statement of %(distributor)s") % {"distributor": distributor},
            "distributor": distributor,
            "form": form,
            "statement": statement,
        }
        return TemplateResponse(request, "admin/distributors/distributor/statement.html", context)

    def _statement_xlsx(self, distributor, statement) -> HttpResponse:
        header = [_("time"), _("kind"), _("amount"), _("balance after"), _("memo"), _("created by")]
        rows = [
            [entry.created_at, entry.get_kind_display(), entry.amount, entry.balance_after, entry.memo,
             entry.created_by.get_username() if entry.created_by else ""]
            for entry in statement.entries.iterator(chunk_size=2000)
        ]
        rows.insert(0, [statement.start, _("Opening balance"), None, statement.opening_balance, "", ""])
        rows.append([statement.end, _("Closing balance"), None, statement.closing_balance, "", ""])
        content = xlsx_bytes(title=distributor.code, header=header, rows=rows)
        filename = f"statement-{distributor.code}-{statement.account.kind}-{statement.start}-{statement.end}.xlsx"
        response = HttpResponse(
            content, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["distributor", "kind", "currency", "balance", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["=distributor__code", "^distributor__code", "distributor__name"]
    list_select_related = ["distributor"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(LargeTableAdminMixin, ReadOnlyAdmin):
    list_display = ["id", "created_at", "account", "kind", "amount", "balance_after", "cause_link", "created_by", "memo"]
    list_filter = ["kind", "account__kind", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=account__distributor__code", "^account__distributor__code"]
    list_select_related = ["account__distributor", "created_by", "cause_type"]

    @admin.display(description=gettext_lazy("cause"))
    def cause_link(self, entry: LedgerEntry):
        if not entry.cause_type_id:
            return "-"
        model = entry.cause_type.model_class()
        if model is None:
            return f"{entry.cause_type} #{entry.cause_id}"
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[entry.cause_id])
        return format_html('<a href="{}">{} #{}</a>', url, model._meta.verbose_name, entry.cause_id)


@admin.register(BalanceCheck)
class BalanceCheckAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "finished_at", "accounts_checked", "result", "triggered_by"]
    readonly_fields = ["started_at", "finished_at", "accounts_checked", "mismatches", "triggered_by"]

    @admin.display(description=gettext_lazy("result"), boolean=False)
    def result(self, check: BalanceCheck):
        if check.finished_at is None:
            return _("running")
        if not check.mismatches:
            return _("all balances equal their ledgers")
        return _("%(count)d accounts differ") % {"count": len(check.mismatches)}

    change_list_template = "admin/distributors/balancecheck/change_list.html"

    def get_urls(self):
        return [
            path("run/", self.admin_site.admin_view(self.run_view), name="distributors_balancecheck_run"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_run": request.user.has_perm("distributors.run_ledger_check")}
        return super().changelist_view(request, extra_context)

    def run_view(self, request):
        """Queue the ledger check (POST only); the worker writes its result as a new row here."""
        from distributors.tasks import verify_ledger

        if request.method != "POST" or not request.user.has_perm("distributors.run_ledger_check"):
            raise PermissionDenied
        with transaction.atomic():
            verify_ledger.defer(triggered_by=request.user.get_username())
        self.message_user(
            request,
            _("The ledger check was queued; its result appears in this list when the worker has run it."),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:distributors_balancecheck_changelist"))


ERP_TARGET_LABELS = dict(ErpSync._meta.get_field("target").flatchoices)
SYNC_STATUS_LABELS = dict(ErpSync._meta.get_field("status").flatchoices)


class RejectForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("reason for the rejection"), max_length=255)


class ReviewNoteForm(forms.Form):
    note = forms.CharField(label=gettext_lazy("what you checked in the ERP"), max_length=255)


class ErpSyncInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = ErpSync
    fields = ["target", "client_reference", "status", "attempts", "upstream_reference", "last_error", "updated_at"]


@admin.register(FundTransaction)
class FundTransactionAdmin(RelatedCodeSearchMixin, LargeTableAdminMixin, admin.ModelAdmin):
    list_display = [
        "id", "distributor", "type", "amount", "payment_channel", "voucher_no", "status", "created_by",
        "created_at", "sync_summary",
    ]
    # Each filter has an (x, -id) index, or is a date range on the indexed created_at; no
    # date_hierarchy: it aggregates the dates of the whole table on every page load.
    list_filter = ["status", "type", "payment_channel", ("created_at", admin.DateFieldListFilter)]
    # Exact, case-sensitive codes, served by the unique indexes; a distributor's code lists its transactions.
    search_fields = ["voucher_no__exact", "external_reference__exact"]
    related_code_search = ("distributor", "code")
    list_select_related = ["distributor", "created_by"]
    autocomplete_fields = ["distributor"]
    inlines = [ErpSyncInline]
    fields = [
        "distributor", "type", "amount", "payment_channel", "payer_account", "receiving_account", "voucher_no",
        "completed_at", "remark", "external_reference", "status", "reverses", "created_by", "created_at",
        "submitted_at", "decided_by", "decided_at", "rejection_reason",
    ]
    readonly_fields = [
        "status", "reverses", "created_by", "created_at", "submitted_at", "decided_by", "decided_at",
        "rejection_reason", "external_reference",
    ]
    actions = [
        "submit_for_approval", "approve", "reject", "reverse", "export_xlsx", "export_csv", "export_syncs_xlsx",
        "export_syncs_csv",
    ]
    change_list_template = "admin/distributors/fundtransaction/change_list.html"
    form = FundTransactionForm

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="distributors_fundtransaction_import"),
            path("import/template/<str:headers>/", view(self.import_template_view),
                 name="distributors_fundtransaction_import_template"),
            *super().get_urls(),
        ]

    def import_view(self, request):
        """Upload: the file becomes an import job, checked in the background; its page is the preview.

        Anyone who may add fund transactions may import them: an import records drafts only.
        """
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = FundTransactionImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = file_import_create(kind=FileJobKind.FUND_TRANSACTION_IMPORT, actor=request.user,
                                         filename=upload.name, content=upload.read(), language=get_language())
            except FileRefused as refused:
                form.add_error("file", str(refused))
            else:
                return HttpResponseRedirect(reverse("admin:backoffice_filejob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Import fund transactions from Excel"),
            "form": form,
            "templates": [(language, reverse("admin:distributors_fundtransaction_import_template", args=[language]))
                          for language in TEMPLATE_LANGUAGES],
        }
        return TemplateResponse(request, "admin/distributors/fundtransaction/import.html", context)

    def import_template_view(self, request, headers):
        if headers not in TEMPLATE_LANGUAGES:
            raise Http404
        if not self.has_add_permission(request):
            raise PermissionDenied
        response = HttpResponse(template_bytes(headers=headers), content_type=XLSX_CONTENT_TYPE)
        response["Content-Disposition"] = f'attachment; filename="fund-transactions-template-{headers}.xlsx"'
        return response

    def get_queryset(self, request):
        # to_attr: a plain list per row, without the related manager and queryset that
        # prefetch_related("erp_syncs") builds for each of the page's rows.
        return super().get_queryset(request).prefetch_related(Prefetch("erp_syncs", to_attr="listed_erp_syncs"))

    @admin.action(description=gettext_lazy("Export selected transactions (.xlsx)"), permissions=["view"])
    def export_xlsx(self, request, queryset):
        return self._export(request, queryset, FileJobKind.FUND_TRANSACTION_EXPORT, "xlsx")

    @admin.action(description=gettext_lazy("Export selected transactions (.csv)"), permissions=["view"])
    def export_csv(self, request, queryset):
        return self._export(request, queryset, FileJobKind.FUND_TRANSACTION_EXPORT, "csv")

    @admin.action(description=gettext_lazy("Export the ERP sync results of the selected transactions (.xlsx)"),
                  permissions=["view"])
    def export_syncs_xlsx(self, request, queryset):
        return self._export(request, queryset, FileJobKind.ERP_SYNC_EXPORT, "xlsx")

    @admin.action(description=gettext_lazy("Export the ERP sync results of the selected transactions (.csv)"),
                  permissions=["view"])
    def export_syncs_csv(self, request, queryset):
        return self._export(request, queryset, FileJobKind.ERP_SYNC_EXPORT, "csv")

    def _export(self, request, queryset, kind: str, file_format: str):
        """Small selections download at once; large ones become a job whose page shows its progress."""
        if queryset.count() <= settings.EXPORT_INLINE_MAX_ROWS:
            if kind == FileJobKind.FUND_TRANSACTION_EXPORT:
                return fund_transactions_export(queryset, file_format=file_format)
            return erp_syncs_export(queryset, file_format=file_format)
        job = large_export_create(kind=kind, file_format=file_format, queryset=queryset, actor=request.user)
        self.message_user(
            request,
            _("The export of %(count)d rows runs in the background; its page shows how far it is, and the "
              "file is there when it is done.") % {"count": job.total_rows},
            messages.INFO,
        )
        return HttpResponseRedirect(reverse("admin:backoffice_filejob_change", args=[job.pk]))

    @admin.display(description=gettext_lazy("ERP syncs"))
    def sync_summary(self, fund_transaction: FundTransaction) -> str:
        # The labels from one dict each, as get_FOO_display() would give them; get_FOO_display()
        # hashes (so translates) every choice's label on each call.
        return ", ".join(
            f"{ERP_TARGET_LABELS.get(s.target, s.target)}: {SYNC_STATUS_LABELS.get(s.status, s.status)}"
            for s in fund_transaction.listed_erp_syncs
        ) or "-"

    def has_change_permission(self, request, obj=None):
        # Anything past draft is history: corrected by a reversing transaction, never edited.
        if obj is not None and not obj.is_editable:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_submit_permission(self, request):
        return request.user.has_perm("distributors.submit_fundtransaction")

    def has_approve_permission(self, request):
        return request.user.has_perm("distributors.approve_fundtransaction")

    def has_reverse_permission(self, request):
        return request.user.has_perm("distributors.reverse_fundtransaction")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            super().save_model(request, obj, form, change)
            return
        # Only what the clerk changed, only while it is a draft; a money field changed makes a maker.
        changes = {name: form.cleaned_data[name] for name in form.changed_data
                   if name in FUND_TRANSACTION_EDITABLE_FIELDS}
        fund_transaction_update(fund_transaction_id=obj.pk, actor=request.user, **changes)
        obj.refresh_from_db()

    @admin.action(description=gettext_lazy("Submit selected drafts for approval"), permissions=["submit"])
    def submit_for_approval(self, request, queryset):
        def perform_all(selected, _cleaned):
            result = fund_transactions_submit(ids=selected.values_list("pk", flat=True))
            outcome = [(messages.SUCCESS, _("%(count)d transactions submitted for approval.") % {"count": result.submitted})]
            for pk, reason in list(result.refused.items())[:50]:
                outcome.append((messages.ERROR, _("FT%(id)s stays a draft: %(reason)s") % {"id": pk, "reason": reason}))
            if len(result.refused) > 50:
                outcome.append((messages.ERROR, _("%(count)d more drafts were refused.") % {"count": len(result.refused) - 50}))
            return outcome

        return confirmed_action(
            self, request, queryset.filter(status=FundTransactionStatus.DRAFT),
            title=_("Submit for approval"),
            explanation=_("The selected drafts go to a supervisor for approval and can no longer be edited."),
            perform_all=perform_all,
        )

    @admin.action(description=gettext_lazy("Approve selected transactions (moves money)"), permissions=["approve"])
    def approve(self, request, queryset):
        def perform(fund_transaction, _cleaned):
            approved = fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=request.user)
            count = approved.erp_syncs.count()
            return _("%(record)s approved; ledger posted; %(count)d ERP syncs queued.") % {
                "record": approved, "count": count,
            }

        return confirmed_action(
            self, request, queryset.filter(status=FundTransactionStatus.PENDING_APPROVAL),
            title=_("Approve transactions"),
            explanation=_(
                "Approving posts each amount to the distributor's ledger and sends it to the ERP systems "
                "the distributor is kept in. This cannot be undone except by a reversing transaction."
            ),
            perform=perform,
        )

    @admin.action(description=gettext_lazy("Reject selected transactions"), permissions=["approve"])
    def reject(self, request, queryset):
        def perform(fund_transaction, cleaned):
            rejected = fund_transaction_reject(
                fund_transaction_id=fund_transaction.pk, actor=request.user, reason=cleaned["reason"]
            )
            return _("%(record)s rejected.") % {"record": rejected}

        return confirmed_action(
            self, request, queryset.filter(status=FundTransactionStatus.PENDING_APPROVAL),
            title=_("Reject transactions"),
            explanation=_("Rejected transactions move no money and stay in the history with your reason."),
            perform=perform,
            form_class=RejectForm,
        )

    @admin.action(description=gettext_lazy("Record a reversing transaction"), permissions=["reverse"])
    def reverse(self, request, queryset):
        def perform(fund_transaction, _cleaned):
            reversal = fund_transaction_reverse(fund_transaction_id=fund_transaction.pk, actor=request.user)
            return _("%(reversal)s recorded as a draft reversing %(record)s; submit it for approval.") % {
                "reversal": reversal, "record": fund_transaction,
            }

        return confirmed_action(
            self, request, queryset.filter(status=FundTransactionStatus.APPROVED),
            title=_("Reverse transactions"),
            explanation=_("A draft with the opposite effect is recorded for each; it needs approval like any other."),
            perform=perform,
        )


@admin.register(ErpSync)
class ErpSyncAdmin(LargeTableAdminMixin, ReadOnlyAdmin):
    list_display = [
        "id", "fund_transaction", "target", "merchant_account", "client_reference", "status", "attempts",
        "upstream_reference", "updated_at", "reviewed_by",
    ]
    list_filter = ["status", "target", ("updated_at", admin.DateFieldListFilter)]
    search_fields = ["=client_reference", "=fund_transaction__voucher_no", "=fund_transaction__distributor__code"]
    list_select_related = ["fund_transaction__distributor", "reviewed_by"]
    actions = ["retry", "resolve_arrived", "resolve_send_again"]

    def has_retry_permission(self, request):
        return request.user.has_perm("distributors.retry_erpsync")

    def has_resolve_permission(self, request):
        return request.user.has_perm("distributors.resolve_erpsync")

    @admin.action(description=gettext_lazy("Retry selected failed syncs"), permissions=["retry"])
    def retry(self, request, queryset):
        def perform(sync, _cleaned):
            if not erp_sync_retry(erp_sync_id=sync.pk):
                raise ValidationError(_("it is no longer failed."))
            return _("%(sync)s queued again with the same reference.") % {"sync": sync}

        return confirmed_action(
            self, request, queryset.filter(status=SyncStatus.FAILED),
            title=_("Retry failed syncs"),
            explanation=_("Each failed sync is sent again to its ERP with its original reference."),
            perform=perform,
        )

    @admin.action(description=gettext_lazy("Manual review: it arrived in the ERP"), permissions=["resolve"])
    def resolve_arrived(self, request, queryset):
        return self._resolve(request, queryset, arrived=True)

    @admin.action(description=gettext_lazy("Manual review: it did not arrive, send again"), permissions=["resolve"])
    def resolve_send_again(self, request, queryset):
        return self._resolve(request, queryset, arrived=False)

    def _resolve(self, request, queryset, *, arrived: bool):
        def perform(sync, cleaned):
            if not erp_sync_resolve(erp_sync_id=sync.pk, actor=request.user, arrived=arrived, note=cleaned["note"]):
                raise ValidationError(_("it is no longer under manual review."))
            if arrived:
                return _("%(sync)s recorded as arrived.") % {"sync": sync}
            return _("%(sync)s queued to be sent again.") % {"sync": sync}

        return confirmed_action(
            self, request, queryset.filter(status=SyncStatus.MANUAL_REVIEW),
            title=_("Resolve manual review"),
            explanation=_(
                "Check in the ERP whether the record arrived before you decide: sending again a record that "
                "did arrive records the money twice."
            ),
            perform=perform,
            form_class=ReviewNoteForm,
        )

