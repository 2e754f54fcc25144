"""Audit history: what each change is attributed to, and the read-only global audit log.

django-pghistory writes an event row from a database trigger for every insert and update of a
tracked model, bulk operations included. The context attached to those rows says who did it and
from where: a web request (with the admin action, if any), an import, a background job or a
management command. Event tables are append-only at the database (PGHISTORY_APPEND_ONLY).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pghistory
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _
from pghistory import core
from pghistory.admin import EventsAdmin
from pghistory.admin.core import EventsChangeList
from pghistory.middleware import HistoryMiddleware
from pghistory.models import Context, Events, EventsQuery, EventsQueryCompiler

from config.admin_paging import LargeTableAdminMixin, LargeTablePaginator, ResultUrlChangeListMixin
from orders.pins import masked_card_number

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


def _contexts_with(**metadata) -> QuerySet:
    """The contexts whose metadata holds these values, as a subquery on the events' pgh_context_id.

    A semi-join on the (indexed) pgh_context_id of each event table, rather than a condition on
    each event's context JSON, which PostgreSQL would evaluate event by event.
    """
    return Context.objects.filter(**{f"metadata__{key}": value for key, value in metadata.items()}).values("id")


class ContextUserFilter(admin.SimpleListFilter):
    title = _("user")
    parameter_name = "user"

    def lookups(self, request, model_admin):
        User = get_user_model()
        return [(str(u.pk), u.get_username()) for u in User.objects.order_by("username")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(pgh_context_id__in=_contexts_with(user=int(self.value())))
        return queryset


class ContextSourceFilter(admin.SimpleListFilter):
    title = _("source")
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return list(SOURCE_LABELS.items())

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(pgh_context_id__in=_contexts_with(source=self.value()))
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
            return queryset.filter(pgh_context_id__in=_contexts_with(action=self.value()))
        return queryset


# --- The global audit log, fast on millions of events -------------------------------------
#
# pghistory's Events view is a UNION ALL over every event table in which each row carries its
# JSON image and the previous image of the same object (for the diff), sorted by pgh_id inside
# each branch. Sorting or paging that view computes all of it for every event: seconds on a
# million events. The list is therefore read in two steps: the page's keys (event model, pgh_id)
# from a light view of the same shape, which reads only the indexed columns and which
# PostgreSQL merges from the (pgh_created_at, pgh_id) index of each event table; then the
# full events, diffs included, for those keys only.


class _KeysCompiler(EventsQueryCompiler):
    """The Events view with the same columns, without the JSON images, the diff or any sort."""

    def _get_select(self, event_model):
        label = event_model._meta.label
        context_table = Context._meta.db_table
        obj_id = "_event.pgh_obj_id::TEXT" if hasattr(event_model, "pgh_obj_id") else "NULL::TEXT"
        return f"""
            SELECT
              CONCAT('{label}', ':', _event.pgh_id) AS pgh_slug,
              _event.pgh_id,
              _event.pgh_created_at,
              _event.pgh_label,
              {obj_id} AS pgh_obj_id,
              '{label}' AS pgh_model,
              '{event_model.pgh_tracked_model._meta.label}' AS pgh_obj_model,
              NULL::JSONB AS pgh_data,
              NULL::JSONB AS pgh_diff,
              _event.pgh_context_id,
              (SELECT metadata FROM {context_table} WHERE id = _event.pgh_context_id) AS pgh_context
            FROM "{event_model._meta.db_table}" _event
            {self._get_where_clause(event_model)}
        """


class _KeysQuery(EventsQuery):
    def get_compiler(self, *args, **kwargs):
        compiler = super().get_compiler(*args, **kwargs)
        compiler.__class__ = _KeysCompiler
        return compiler


def _keys_queryset(queryset: QuerySet) -> QuerySet:
    """`queryset` (filters, ordering and all) over the light view."""
    keys = queryset._chain()
    keys.query = queryset.query.chain()
    keys.query.__class__ = _KeysQuery
    return keys


def _event_models(query: EventsQuery):
    def model_of(objs):
        if isinstance(objs, QuerySet):
            return objs.model._meta.concrete_model
        return objs[0].__class__._meta.concrete_model if objs else None

    return core.event_models(
        models=query.across, references_model=model_of(query.references), tracks_model=model_of(query.tracks)
    )


class AuditLogPaginator(LargeTablePaginator):
    """Counts on the light view and fetches a page in two steps (see above)."""

    def counted(self, queryset: QuerySet) -> QuerySet:
        return _keys_queryset(queryset)

    def estimate_tables(self, queryset):
        query = queryset.query
        if query.has_filters() or query.tracks or query.references:
            return []
        return [event_model._meta.db_table for event_model in _event_models(query)]

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        return self._get_page(self.events(bottom, top), number, self)

    def events(self, bottom: int, top: int) -> list:
        """The events bottom..top of the list, in its order, with their diffs and users."""
        queryset = self.object_list
        keys = list(_keys_queryset(queryset).values_list("pgh_model", "pgh_id")[bottom:top])
        if not keys:
            return []
        by_model: dict[str, list[int]] = {}
        for model, pk in keys:
            by_model.setdefault(model, []).append(pk)
        wanted = Q()
        for model, pks in by_model.items():
            wanted |= Q(pgh_model=model, pgh_id__in=pks)
        full = queryset.model.objects.across(*by_model).filter(wanted).order_by()
        found = {(event.pgh_model, event.pgh_id): event for event in full}
        events = [found[key] for key in keys if key in found]
        _attach_usernames(events)
        return events


def _attach_usernames(events) -> None:
    user_ids = {(event.pgh_context or {}).get("user") for event in events} - {None}
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")) if user_ids else {}
    for event in events:
        event.username = names.get((event.pgh_context or {}).get("user"))


class AuditLogChangeList(ResultUrlChangeListMixin, EventsChangeList):
    def get_results(self, request):
        super().get_results(request)
        if isinstance(self.result_list, QuerySet):
            # A single page, or "show all": still two steps, never the full view.
            self.result_list = self.paginator.events(0, self.list_max_show_all)


# Values the event rows hold whole but the audit log shows masked, by tracked model and field.
MASKED_FIELDS: dict[str, dict[str, Callable[[str], str]]] = {
    "orders.CardSecret": {"card_number": masked_card_number},
}


def _masked(event, values: dict | None, *, diff: bool) -> dict | None:
    """`values` (an event's data, or its diff of [before, after] pairs) with MASKED_FIELDS masked."""
    masks = MASKED_FIELDS.get(event.pgh_obj_model)
    if not masks or not values:
        return values
    shown = dict(values)
    for field, mask in masks.items():
        if field not in shown:
            continue
        value = shown[field]
        pair = value if diff and isinstance(value, list) else [value]
        masked = [mask(v) if isinstance(v, str) else v for v in pair]
        shown[field] = masked if diff and isinstance(value, list) else masked[0]
    return shown


def _as_json(values: dict | None) -> str | None:
    return json.dumps(values, ensure_ascii=False, cls=DjangoJSONEncoder) if values else None


class AuditLogAdmin(LargeTableAdminMixin, EventsAdmin):
    """The global audit log: every change to every business row, filterable, never editable.

    An event's data and diff are shown with MASKED_FIELDS masked (card numbers: only the recorded
    reveal and export show them whole).
    """

    paginator = AuditLogPaginator
    # Newest first, from the (pgh_created_at, pgh_id) index of each event table; other orders
    # would sort every event.
    ordering = ["-pgh_created_at", "-pgh_id"]
    sortable_by = []

    def get_changelist(self, request, **kwargs):
        return AuditLogChangeList

    def get_list_filter(self, request):
        return [
            *super().get_list_filter(request),
            ("pgh_created_at", admin.DateFieldListFilter),
            ContextUserFilter,
            ContextSourceFilter,
            ContextActionFilter,
        ]

    def get_list_display(self, request):
        return ["pgh_created_at", "pgh_obj_model", "pgh_obj_id", "pgh_label", "who", "where", "changes"]

    def get_fields(self, request, obj=None):
        shown_as = {"pgh_data": "data", "pgh_diff": "changes"}
        return list(dict.fromkeys(shown_as.get(name, name) for name in super().get_fields(request, obj)))

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "data", "changes"]

    @admin.display(description=Events._meta.get_field("pgh_data").verbose_name)
    def data(self, event) -> str | None:
        return _as_json(_masked(event, event.pgh_data, diff=False))

    @admin.display(description=Events._meta.get_field("pgh_diff").verbose_name)
    def changes(self, event) -> str | None:
        return _as_json(_masked(event, event.pgh_diff, diff=True))

    @admin.display(description=_("who"))
    def who(self, event) -> str:
        user_id = (event.pgh_context or {}).get("user")
        if user_id is None:
            return "-"
        # Names are read once per page (AuditLogPaginator.events); a deleted user shows as its id.
        return getattr(event, "username", None) or str(user_id)

    @admin.display(description=_("from where"))
    def where(self, event) -> str:
        context = event.pgh_context or {}
        source = SOURCE_LABELS.get(context.get("source"), _("Database (no context)"))
        detail = context.get("action") or context.get("task") or context.get("command") or context.get("url") or ""
        return f"{source}: {detail}" if detail else str(source)
