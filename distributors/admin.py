from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from config.spreadsheets import xlsx_bytes
from distributors.forms import StatementForm
from distributors.models import Account, BalanceCheck, Distributor, DistributorStatus, LedgerEntry
from distributors.selectors import account_statement
from distributors.services import distributor_open_accounts, distributors_set_status


class AccountInline(admin.TabularInline):
    model = Account
    fields = ["kind", "currency", "balance", "updated_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: nobody adds, changes or deletes them in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["distributor", "kind", "currency", "balance", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["=distributor__code", "^distributor__code", "distributor__name"]
    list_select_related = ["distributor"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "account", "kind", "amount", "balance_after", "cause_link", "created_by", "memo"]
    list_filter = ["kind", "account__kind", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=account__distributor__code", "^account__distributor__code"]
    list_select_related = ["account__distributor", "created_by", "cause_type"]
    date_hierarchy = "created_at"
    show_full_result_count = False

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
