"""Audit history: what each change is attributed to, and the read-only global audit log.

django-pghistory writes an event row from a database trigger for every insert and update of a
tracked model, bulk operations included. The context attached to those rows says who did it and
from where: a web request (with the admin action, if any), an import, a background job or a
management command. Event tables are append-only at the database (PGHISTORY_APPEND_ONLY).
"""

from __future__ import annotations

from typing import Any

import pghistory
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from pghistory.admin import EventsAdmin
from pghistory.middleware import HistoryMiddleware

SOURCE_WEB = "web"
SOURCE_IMPORT = "import"
SOURCE_JOB = "job"
SOURCE_COMMAND = "command"

SOURCE_LABELS = {
    SOURCE_WEB: _("Web / admin"),
    SOURCE_IMPORT: _("Import"),
    SOURCE_JOB: _("Background job"),
    SOURCE_COMMAND: _("Command line or shell"),
}


class HistoryContextMiddleware(HistoryMiddleware):
    """Attribute changes made in a request to the user, the URL and the admin action clicked."""

    def get_context(self, request) -> dict[str, Any]:
        context = super().get_context(request)
        context["source"] = SOURCE_WEB
        # Only admin forms carry an action; reading POST elsewhere would consume raw bodies
        # that views such as the upstream callbacks must read themselves.
        if request.method == "POST" and request.path.startswith("/admin/") and request.POST.get("action"):
            context["action"] = request.POST["action"]
        return context


def command_context(command: str) -> pghistory.context:
    return pghistory.context(source=SOURCE_COMMAND, command=command)


def job_context(task_name: str, job_id: int | None) -> pghistory.context:
    return pghistory.context(source=SOURCE_JOB, task=task_name, job_id=job_id)


class ContextUserFilter(admin.SimpleListFilter):
    title = _("user")
    parameter_name = "user"

    def lookups(self, request, model_admin):
        User = get_user_model()
        return [(str(u.pk), u.get_username()) for u in User.objects.order_by("username")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(pgh_context__user=int(self.value()))
        return queryset


class ContextSourceFilter(admin.SimpleListFilter):
    title = _("source")
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return list(SOURCE_LABELS.items())

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(pgh_context__source=self.value())
        return queryset


class ContextActionFilter(admin.SimpleListFilter):
    title = _("admin action")
    parameter_name = "admin_action"

    def lookups(self, request, model_admin):
        names = {
            name
            for registered in model_admin.admin_site._registry.values()
            for name, _func in ((a if isinstance(a, str) else a.__name__, a) for a in (registered.actions or []))
        }
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(pgh_context__action=self.value())
        return queryset


class AuditLogAdmin(EventsAdmin):
    """The global audit log: every change to every business row, filterable, never editable."""

    def get_list_filter(self, request):
        return [
            *super().get_list_filter(request),
            ("pgh_created_at", admin.DateFieldListFilter),
            ContextUserFilter,
            ContextSourceFilter,
            ContextActionFilter,
        ]

    def get_list_display(self, request):
        return ["pgh_created_at", "pgh_obj_model", "pgh_obj_id", "pgh_label", "who", "where", "pgh_diff"]

    @admin.display(description=_("who"))
    def who(self, event) -> str:
        user_id = (event.pgh_context or {}).get("user")
        if user_id is None:
            return "-"
        user = get_user_model().objects.filter(pk=user_id).first()
        return user.get_username() if user else str(user_id)

    @admin.display(description=_("from where"))
    def where(self, event) -> str:
        context = event.pgh_context or {}
        source = SOURCE_LABELS.get(context.get("source"), _("Database (no context)"))
        detail = context.get("action") or context.get("task") or context.get("command") or context.get("url") or ""
        return f"{source}: {detail}" if detail else str(source)
