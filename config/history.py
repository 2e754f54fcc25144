"""Audit history: what each change is attributed to, and the read-only global audit log.

django-pghistory writes an event row from a database trigger for every insert and update of a
tracked model, bulk operations included. The context attached to those rows says who did it and
from where: a web request (with the admin action, if any), an import, a background job or a
management command. Event tables are append-only at the database (PGHISTORY_APPEND_ONLY).

The audit log shows each event in the words of the admin (config.history_display) and narrows it
the way an audit does: by distributor across its related rows, user, source, admin action, time,
and a search by the numbers a clerk quotes (order, voucher, client reference).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

import pghistory
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connections, models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pghistory import core
from pghistory.admin import EventsAdmin
from pghistory.admin.core import (
    BackFilter,
    EventModelFilter,
    EventsChangeList,
    LabelFilter,
    MethodFilter,
    ModelFilter,
    ObjFilter,
    _filter_event_models,
    _get_model,
    _get_obj,
)
from pghistory.middleware import HistoryMiddleware
from pghistory.models import Context, EventsQuery, EventsQueryCompiler

from config import history_display as shown
from config.admin_paging import LargeTableAdminMixin, LargeTablePaginator, ResultUrlChangeListMixin
from config.history_display import SOURCE_COMMAND, SOURCE_IMPORT, SOURCE_JOB, SOURCE_LABELS, SOURCE_WEB

__all__ = ["SOURCE_COMMAND", "SOURCE_IMPORT", "SOURCE_JOB", "SOURCE_WEB", "command_context", "job_context"]


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


# --- Conditions on the rows an event is about --------------------------------------------
#
# "Everything about distributor D" and "the order numbered N" are questions about the business
# rows, not about the events' JSON. Each becomes, for every event table, a condition on that
# table's own indexed columns: its pgh_obj_id (the row it records) and its foreign keys (the rows
# it pointed to), each matched against a subquery on the (small, indexed) business tables. The
# conditions are added inside each branch of the events view (AuditEventsCompiler); an event table
# with no way to the rows asked for gets FALSE and is skipped. Each is `column = ANY(ARRAY(subquery))`:
# the array is computed once and every column's index serves it (a BitmapOr), where
# `column IN (subquery)` ORed with others would be tested event by event over the whole table.

RowsOf = Callable[[type[models.Model]], "QuerySet | None"]


def _sql(queryset: QuerySet) -> str:
    """The queryset as SQL with its values inlined, '%' escaped for the events query's own params."""
    connection = connections[queryset.db]
    connection.ensure_connection()  # values are quoted by the driver, on the open connection
    sql, params = queryset.query.get_compiler(connection=connection).as_sql()
    return connection.ops.compose_sql(sql, params).replace("%", "%%")


def _conditions(rows_of: RowsOf, recorded_rows_of: RowsOf | None = None) -> dict[str, str]:
    """By event model label: the SQL picking its events about the rows `rows_of` selects.

    `rows_of(model)` is a queryset of the matching rows of `model` (a values("pk") queryset), or
    None when rows of that model cannot match. An event matches when one of its foreign keys (as
    they were when it was recorded) points to a matching row, or when the row it records matches
    `recorded_rows_of` (by default `rows_of`).
    """
    recorded_rows_of = recorded_rows_of or rows_of
    conditions = {}
    for event_model in core.event_models():
        parts = []
        recorded = recorded_rows_of(event_model.pgh_tracked_model)
        if recorded is not None and hasattr(event_model, "pgh_obj_id"):
            parts.append(f"_event.pgh_obj_id = ANY(ARRAY({_sql(recorded)}))")
        for field in event_model._meta.concrete_fields:
            if not field.is_relation or field.name in ("pgh_obj", "pgh_context"):
                continue
            related = rows_of(field.related_model)
            if related is not None:
                parts.append(f'_event."{field.column}" = ANY(ARRAY({_sql(related)}))')
        if parts:
            conditions[event_model._meta.label] = " OR ".join(parts)
    return conditions


def _distributor_conditions(code: str) -> dict[str, str]:
    """The distributor with this code, and the rows that belong to it by a foreign key, directly
    (accounts, fund transactions, orders, batches) or through one of those (ledger entries, ERP
    syncs, card secrets).

    A row with a foreign key to the distributor is matched by that key as its event recorded it,
    so its own events need no second condition on the row's present state.
    """
    from distributors.models import Distributor

    def rows_of(model):
        if model is Distributor:
            return Distributor.objects.filter(code__iexact=code).values("pk")
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is Distributor:
                return model._default_manager.filter(**{f"{field.name}__code__iexact": code}).values("pk")
        return None

    return _conditions(rows_of, lambda model: rows_of(model) if model is Distributor else None)


def _searched_rows(term: str) -> RowsOf:
    """The rows whose number is `term`: an order, a fund transaction, an ERP sync, a batch, a distributor.

    Each condition is one its table has an index for (ERP syncs: unique on target and client
    reference, hence the list of targets).
    """
    from distributors.models import Distributor, ErpSync, FundTransaction
    from orders.models import OrderBatch, RechargeOrder
    from providers.models import ERP_PROVIDERS

    searches = {
        RechargeOrder: Q(client_reference=term) | Q(upstream_order_no=term),
        FundTransaction: Q(voucher_no=term) | Q(external_reference=term),
        ErpSync: Q(target__in=ERP_PROVIDERS, client_reference=term),
        OrderBatch: Q(batch_code=term),
        Distributor: Q(code__iexact=term),
    }

    def rows_of(model):
        condition = searches.get(model)
        return model._default_manager.filter(condition).values("pk") if condition is not None else None

    return rows_of


class AuditEventsCompiler(EventsQueryCompiler):
    """pghistory's events view, with the query's row conditions inside each event table's branch."""

    def _get_where_clause(self, event_model):
        where = super()._get_where_clause(event_model)
        conditions = [where.removeprefix("WHERE ")] if where else []
        for by_model in getattr(self.query, "row_conditions", ()):
            conditions.append(by_model.get(event_model._meta.label, "FALSE"))
        return "WHERE " + " AND ".join(f"({condition})" for condition in conditions) if conditions else ""


class AuditEventsQuery(EventsQuery):
    def get_compiler(self, *args, **kwargs):
        compiler = super().get_compiler(*args, **kwargs)
        compiler.__class__ = AuditEventsCompiler
        return compiler


def _about_rows(queryset: QuerySet, conditions: dict[str, str]) -> QuerySet:
    """`queryset` narrowed to the events that meet `conditions` (see _conditions)."""
    narrowed = queryset._chain()
    if not isinstance(narrowed.query, AuditEventsQuery):
        narrowed.query.__class__ = AuditEventsQuery
    # Queries are copied attribute by attribute: a new list, so the original keeps its own.
    narrowed.query.row_conditions = [*getattr(narrowed.query, "row_conditions", ()), conditions]
    return narrowed


# --- Filters, in the auditor's words ---------------------------------------------------------


class InputFilterMixin:
    """A filter typed into a small GET form, which keeps the list's other filters and search."""

    template = "admin/backoffice/input_filter.html"

    def inputs(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def kept_parameters(self, changelist) -> list[tuple[str, str]]:
        own = set(self.expected_parameters())
        return [(name, value) for name, values in changelist.filter_params.items() if name not in own
                for value in values]


class DistributorFilter(InputFilterMixin, admin.SimpleListFilter):
    """A distributor's rows and the rows that hang off them: accounts, ledger entries, fund
    transactions and their ERP syncs, orders, batches and card secrets."""

    title = gettext_lazy("distributor")
    parameter_name = "distributor"

    def lookups(self, request, model_admin):
        return []

    def has_output(self):
        return True

    def inputs(self):
        return [{"name": self.parameter_name, "type": "text", "label": _("distributor code"),
                 "value": self.value() or ""}]

    def choices(self, changelist):
        self.kept = self.kept_parameters(changelist)
        yield {"selected": self.value() is None, "display": _("All"),
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}

    def queryset(self, request, queryset):
        code = (self.value() or "").strip()
        return _about_rows(queryset, _distributor_conditions(code)) if code else queryset


class TimeFilter(InputFilterMixin, admin.DateFieldListFilter):
    """Django's date links (today, past 7 days...), and a range of days typed in, both ends included,
    in TIME_ZONE. Served by the (pgh_created_at, pgh_id) index of each event table."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.lookup_kwarg_from = f"{field_path}__from"
        self.lookup_kwarg_to = f"{field_path}__to"
        self.day_from = self._day(params.get(self.lookup_kwarg_from))
        self.day_to = self._day(params.get(self.lookup_kwarg_to))
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = _("time")

    @staticmethod
    def _day(values) -> date | None:
        try:
            return parse_date(values[-1]) if values else None
        except ValueError:
            return None

    def expected_parameters(self):
        return [*super().expected_parameters(), self.lookup_kwarg_from, self.lookup_kwarg_to]

    def inputs(self):
        return [
            {"name": self.lookup_kwarg_from, "type": "date", "label": _("from"),
             "value": self.day_from.isoformat() if self.day_from else ""},
            {"name": self.lookup_kwarg_to, "type": "date", "label": _("to"),
             "value": self.day_to.isoformat() if self.day_to else ""},
        ]

    def choices(self, changelist):
        self.kept = self.kept_parameters(changelist)
        yield from super().choices(changelist)

    def queryset(self, request, queryset):
        typed = {self.lookup_kwarg_from, self.lookup_kwarg_to}
        links = {name: value for name, value in self.used_parameters.items() if name not in typed}
        try:
            if links:
                queryset = queryset.filter(**{name: value[-1] for name, value in links.items()})
        except ValidationError as err:  # a link edited by hand: the admin's "invalid filter" page
            raise IncorrectLookupParameters(err) from err
        if self.day_from:
            queryset = queryset.filter(**{f"{self.field_path}__gte": _local_midnight(self.day_from)})
        if self.day_to:
            queryset = queryset.filter(**{f"{self.field_path}__lt": _local_midnight(self.day_to + timedelta(days=1))})
        return queryset


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class ContextUserFilter(admin.SimpleListFilter):
    title = gettext_lazy("user")
    parameter_name = "user"

    def lookups(self, request, model_admin):
        User = get_user_model()
        return [(str(u.pk), u.get_username()) for u in User.objects.order_by("username")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        if not self.value().isdigit():
            raise IncorrectLookupParameters(self.value())
        return queryset.filter(pgh_context_id__in=_contexts_with(user=int(self.value())))


class ContextSourceFilter(admin.SimpleListFilter):
    title = gettext_lazy("source")
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return list(SOURCE_LABELS.items())

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(pgh_context_id__in=_contexts_with(source=self.value()))
        return queryset


class ContextActionFilter(admin.SimpleListFilter):
    title = gettext_lazy("admin action")
    parameter_name = "admin_action"

    def lookups(self, request, model_admin):
        return shown.action_choices(model_admin.admin_site)

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(pgh_context_id__in=_contexts_with(action=self.value()))
        return queryset


class EventKindFilter(LabelFilter):
    title = gettext_lazy("event")

    def lookups(self, request, model_admin):
        return [(label, shown.event_label(label)) for label, _label in super().lookups(request, model_admin)]


class RecordTypeFilter(EventModelFilter):
    title = gettext_lazy("record type")

    def lookups(self, request, model_admin):
        choices = [
            (event_model._meta.label_lower, shown.model_name(event_model.pgh_tracked_model._meta.label))
            for event_model in _filter_event_models(request)
        ]
        return sorted(choices, key=lambda choice: choice[1])


class HistoryKindFilter(MethodFilter):
    title = gettext_lazy("history")

    def lookups(self, request, model_admin):
        return [("tracks", _("of the record itself")), ("references", _("of the records referring to it"))]


class RecordFilter(ObjFilter):
    title = gettext_lazy("record")

    def lookups(self, request, model_admin):
        return [(value, _record_name(value)) for value, _label in super().lookups(request, model_admin)]


class RecordModelFilter(ModelFilter):
    title = gettext_lazy("record type")

    def lookups(self, request, model_admin):
        return [(value, shown.model_name(value)) for value, _label in super().lookups(request, model_admin)]


def _record_name(model_pk: str) -> str:
    """"orders.RechargeOrder:5" as the record's type and number."""
    model, _sep, pk = model_pk.partition(":")
    return f"{shown.model_name(model)} #{pk}" if pk else model_pk


# --- The global audit log, fast on millions of events -------------------------------------
#
# pghistory's Events view is a UNION ALL over every event table in which each row carries its
# JSON image and the previous image of the same object (for the diff), sorted by pgh_id inside
# each branch. Sorting or paging that view computes all of it for every event, so one page
# costs as much as reading the whole history. The list is therefore read in two steps: the
# page's keys (event model, pgh_id) from a light view of the same shape, which reads only the
# indexed columns and which PostgreSQL merges from the (pgh_created_at, pgh_id) index of each
# event table; then the full events, diffs included, for those keys only.


class _KeysCompiler(AuditEventsCompiler):
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


class _KeysQuery(AuditEventsQuery):
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
        if query.has_filters() or query.tracks or query.references or getattr(query, "row_conditions", None):
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
    """Each event's user, and the names of the users its data points to (created by, decided by...),
    read in one query for the page."""
    user_ids = {(event.pgh_context or {}).get("user") for event in events} - {None}
    for event in events:
        user_ids |= shown.user_ids(event.pgh_obj_model, event.pgh_data)
        user_ids |= shown.user_ids(event.pgh_obj_model, event.pgh_diff, diff=True)
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")) if user_ids else {}
    for event in events:
        event.username = names.get((event.pgh_context or {}).get("user"))
        event.usernames = names


class AuditLogChangeList(ResultUrlChangeListMixin, EventsChangeList):
    def get_results(self, request):
        super().get_results(request)
        if isinstance(self.result_list, QuerySet):
            # A single page, or "show all": still two steps, never the full view.
            self.result_list = self.paginator.events(0, self.list_max_show_all)



class AuditLogAdmin(LargeTableAdminMixin, EventsAdmin):
    """The global audit log: every change to every business row, in the words of the admin, never editable.

    Each row shows the record by its model's name, the change as "field: before → after" with the
    values as the admin shows them (config.history_display; card numbers masked, encrypted PINs
    never shown), who made it, from where and by which admin action. Everything but the user
    names (read once per page) comes from memory.
    """

    paginator = AuditLogPaginator
    # Newest first, from the (pgh_created_at, pgh_id) index of each event table; other orders
    # would sort every event.
    ordering = ["-pgh_created_at", "-pgh_id"]
    sortable_by = []
    # Searched by get_search_results below; a search field is needed for the admin to show the box.
    search_fields = ["pgh_obj_id"]
    search_help_text = gettext_lazy(
        "An order number or upstream order number, a voucher number or external reference, an ERP "
        "client reference, a batch code or a distributor code: that record's history and its related rows'."
    )
    list_display = ["when", "record", "record_id", "event", "who", "source", "what", "changes"]
    detail_fields = ["when", "record", "record_id", "event", "who", "source", "what", "address", "changes",
                     "data"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        queryset.query.__class__ = AuditEventsQuery
        return queryset

    def get_changelist(self, request, **kwargs):
        return AuditLogChangeList

    def get_list_filter(self, request):
        filters = [
            DistributorFilter,
            RecordTypeFilter,
            EventKindFilter,
            ("pgh_created_at", TimeFilter),
            ContextUserFilter,
            ContextSourceFilter,
            ContextActionFilter,
        ]
        if "obj" in request.GET:
            filters += [HistoryKindFilter, RecordFilter, BackFilter]
        elif "model" in request.GET:
            filters += [RecordModelFilter, BackFilter]
        return filters

    def get_list_display(self, request):
        return self.list_display

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return _about_rows(queryset, _conditions(_searched_rows(term))), False

    def get_fields(self, request, obj=None):
        return self.detail_fields

    def get_readonly_fields(self, request, obj=None):
        return self.detail_fields

    def changelist_view(self, request, extra_context=None):
        # pghistory's view titles the list in English ("Tracks <object>"); the same, in words.
        context = {"title": self.model._meta.verbose_name_plural}
        obj = _get_obj(request.GET.get("obj"))
        model = _get_model(request.GET.get("model"))
        if obj:
            name = _record_name(request.GET["obj"])
            context["subtitle"] = {
                "tracks": _("History of %(record)s") % {"record": name},
                "references": _("History of the records referring to %(record)s") % {"record": name},
            }.get(request.GET.get("method"), name)
        elif model:
            context["subtitle"] = model._meta.verbose_name_plural
        back = request.GET.get("back")
        # The "Back" link is whatever the URL says: only a page of this site (no javascript:, no elsewhere).
        if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                                    require_https=request.is_secure()):
            context["pgh_back"] = back
        return admin.ModelAdmin.changelist_view(self, request, {**context, **(extra_context or {})})

    @admin.display(description=gettext_lazy("time"))
    def when(self, event) -> str:
        return shown.local_time(event.pgh_created_at)

    @admin.display(description=gettext_lazy("record type"))
    def record(self, event) -> str:
        return shown.model_name(event.pgh_obj_model)

    @admin.display(description=gettext_lazy("record ID"))
    def record_id(self, event) -> str:
        return event.pgh_obj_id or shown.EMPTY

    @admin.display(description=gettext_lazy("event"))
    def event(self, event) -> str:
        return shown.event_label(event.pgh_label)

    @admin.display(description=gettext_lazy("user"))
    def who(self, event) -> str:
        user_id = (event.pgh_context or {}).get("user")
        if user_id is None:
            return shown.EMPTY
        # Names are read once per page (AuditLogPaginator.events); a deleted user shows as its id.
        return _usernames(event)[0] or str(user_id)

    @admin.display(description=gettext_lazy("source"))
    def source(self, event) -> str:
        return shown.source_text(event.pgh_context)

    @admin.display(description=gettext_lazy("action"))
    def what(self, event) -> str:
        return shown.what_text(self.admin_site, event.pgh_context)

    @admin.display(description=gettext_lazy("address"))
    def address(self, event) -> str:
        return (event.pgh_context or {}).get("url") or shown.EMPTY

    @admin.display(description=gettext_lazy("changes"))
    def changes(self, event) -> str:
        users = _usernames(event)[1]
        if event.pgh_diff:
            return shown.as_lines(shown.changes(event.pgh_obj_model, event.pgh_diff, users))
        # A new row (or an insert-only one, such as a ledger entry): what it was created with.
        return shown.as_lines(shown.values(event.pgh_obj_model, event.pgh_data, users, skip_empty=True))

    @admin.display(description=gettext_lazy("record as saved"))
    def data(self, event) -> str:
        return shown.as_lines(shown.values(event.pgh_obj_model, event.pgh_data, _usernames(event)[1]))


def _usernames(event) -> tuple[str | None, dict]:
    """The event's user's name and the names of the users its data points to."""
    if not hasattr(event, "usernames"):  # the entry page: one event, one query
        _attach_usernames([event])
    return event.username, event.usernames
