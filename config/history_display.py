"""The audit log in the words of the admin: models, fields, values and actions as a clerk sees them.

An event holds its row as JSON of column names and stored values (enum codes, decimals as JSON
numbers, UTC times). Everything here turns that into what the row's own admin page would show:
the field's verbose name, the choice's label, money with its decimal places, times in TIME_ZONE,
the admin action's description. All of it is read from the models' `_meta` and the admin site's
registry, in memory: rendering a page of events runs no query.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import model_format_dict
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.safestring import mark_safe
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from orders.pins import masked_card_number

SOURCE_WEB = "web"
SOURCE_IMPORT = "import"
SOURCE_JOB = "job"
SOURCE_COMMAND = "command"

SOURCE_LABELS = {
    SOURCE_WEB: gettext_lazy("Web / admin"),
    SOURCE_IMPORT: gettext_lazy("Import"),
    SOURCE_JOB: gettext_lazy("Background job"),
    SOURCE_COMMAND: gettext_lazy("Command line or shell"),
}

EVENT_LABELS = {
    "insert": gettext_lazy("created"),
    "update": gettext_lazy("changed"),
    "delete": gettext_lazy("deleted"),
}

# The background jobs that write business rows (config.jobs.attributed), by task name.
JOB_LABELS = {
    "distributors.verify_ledger": gettext_lazy("Ledger check"),
    "distributors.verify_ledger_periodically": gettext_lazy("Scheduled ledger check"),
    "distributors.submit_erp_sync": gettext_lazy("ERP sync"),
    "distributors.validate_import": gettext_lazy("Import check"),
    "distributors.run_import": gettext_lazy("Import"),
    "distributors.run_export": gettext_lazy("Export"),
    "orders.submit_orders": gettext_lazy("Order submission"),
    "orders.submit_order": gettext_lazy("Order submission"),  # a removed task: its events stay in the history
    "orders.submit_batch_chunk": gettext_lazy("Batch submission"),
    "orders.query_order": gettext_lazy("Order status query"),
    "orders.reconcile": gettext_lazy("Reconciliation"),
    "orders.sync_products": gettext_lazy("Product sync"),
    "orders.retry_stalled_jobs": gettext_lazy("Stalled job recovery"),
}

# Values the event rows hold whole but the audit log shows masked, by tracked model and column.
MASKED_FIELDS: dict[str, dict[str, Callable[[str], str]]] = {
    "orders.CardSecret": {"card_number": masked_card_number},
}

EMPTY = "-"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # in every language; an audit needs the seconds, which DATETIME_FORMAT drops


# --- models, fields and values -------------------------------------------------------------------
#
# A page shows some 100 events of some 20 fields each. How each column of a model is named and
# formatted is worked out once per model and language (the field's class, its choices' labels,
# its mask), so that a value costs one dictionary look-up and one small function call.

Formatter = Callable[[Any], str]


@cache
def _tracked_model(label: str) -> type[models.Model] | None:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def model_name(label: str) -> str:
    model = _tracked_model(label)
    return str(model._meta.verbose_name) if model else label


def event_label(label: str) -> str:
    return str(EVENT_LABELS.get(label, label))


def local_time(moment) -> str:
    return timezone.localtime(moment).strftime(TIME_FORMAT)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder) if isinstance(value, (dict, list)) else str(value)


def _datetime_text(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(value)  # PostgreSQL's JSON of a timestamptz is ISO 8601
    except (TypeError, ValueError):
        return _as_text(value)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return local_time(moment)


def _date_text(value: Any) -> str:
    try:
        return date.fromisoformat(value[:10]).isoformat()
    except (TypeError, ValueError):
        return _as_text(value)


def _user(value: Any) -> str:
    """A foreign key to a user: shown by the name read for the page (see `_text`), else its id."""
    return _as_text(value)


def _formatter(obj_model: str, column: str, field: models.Field) -> Formatter:
    """How the admin shows this field's stored value, in the active language."""
    if field.is_relation and field.related_model is get_user_model():
        return _user
    if isinstance(field, models.BinaryField):
        hidden = _("(encrypted, not shown)")  # card PINs: only the recorded reveal decrypts them
        return lambda value: hidden
    mask = MASKED_FIELDS.get(obj_model, {}).get(column)
    if mask:
        return lambda value: mask(value) if isinstance(value, str) else _as_text(value)
    if field.flatchoices:
        labels = {choice: str(label) for choice, label in field.flatchoices}
        return lambda value: labels.get(value) or _as_text(value)
    if isinstance(field, models.BooleanField):
        yes, no = _("yes"), _("no")
        return lambda value: yes if value else no
    if isinstance(field, models.DecimalField):
        places = field.decimal_places

        def decimal_text(value):
            try:
                # JSON numbers arrive as floats; their shortest repr is the stored decimal.
                return number_format(Decimal(str(value)), decimal_pos=places)
            except InvalidOperation:
                return _as_text(value)

        return decimal_text
    if isinstance(field, models.DateTimeField):
        return _datetime_text
    if isinstance(field, models.DateField):
        return _date_text
    return _as_text


@lru_cache(maxsize=512)
def _columns(obj_model: str, language: str | None) -> dict[str, tuple[str, Formatter, bool]]:
    """By database column (the keys of an event's data), in the model's field order: the field's
    name, its formatter, and whether it is the primary key."""
    model = _tracked_model(obj_model)
    if model is None:
        return {}
    return {
        field.column: (str(field.verbose_name), _formatter(obj_model, field.column, field), field.primary_key)
        for field in model._meta.concrete_fields
    }


def _ordered(obj_model: str, values: dict) -> Iterator[tuple[str, Formatter, bool, Any]]:
    """(name, formatter, is the key, value) in the model's field order; columns it no longer has last."""
    columns = _columns(obj_model, get_language())
    for column, (name, formatter, is_key) in columns.items():
        if column in values:
            yield name, formatter, is_key, values[column]
    for column in values.keys() - columns.keys():
        yield column, _as_text, False, values[column]


def _text(formatter: Formatter, value: Any, users: dict) -> str:
    if value is None or value == "":
        return EMPTY
    if formatter is _user:
        return users.get(value) or _as_text(value)
    return formatter(value)


def user_ids(obj_model: str, values: dict | None, *, diff: bool = False) -> set:
    """The users an event's data (or diff) points to, to read their names with the page's others."""
    ids = set()
    for column, (_name, formatter, _is_key) in _columns(obj_model, get_language()).items():
        if formatter is _user and values and column in values:
            ids.update(values[column] if diff else [values[column]])
    return ids - {None}


def changes(obj_model: str, diff: dict | None, users: dict | None = None) -> list[str]:
    """An update's diff as lines "field: before → after", in the model's field order; `users`
    names the users its foreign keys point to. A change that does not show (a time moved by less
    than a second, as an auto-updated one does) is left out."""
    users = users or {}
    lines = []
    for name, formatter, _is_key, (before, after) in _ordered(obj_model, diff or {}):
        before_text, after_text = _text(formatter, before, users), _text(formatter, after, users)
        if before_text != after_text:
            lines.append(f"{name}: {before_text} → {after_text}")
    return lines


def values(obj_model: str, data: dict | None, users: dict | None = None, *, skip_empty: bool = False) -> list[str]:
    """A row's data as lines "field: value", in the model's field order; `skip_empty` leaves out
    empty fields and the key (shown in a column of its own)."""
    users = users or {}
    return [
        f"{name}: {_text(formatter, value, users)}"
        for name, formatter, is_key, value in _ordered(obj_model, data or {})
        if not (skip_empty and (value is None or value == "" or is_key))
    ]


def as_lines(lines: list[str]) -> str:
    """Lines of text as HTML, one per line, each escaped."""
    # The standard library's escape: Django's is lazy-aware and marks each line safe, work repeated
    # for every line of every diff on the page, for text that is plain str here.
    if not lines:
        return EMPTY
    return mark_safe("<br>".join(html.escape(line) for line in lines))  # noqa: S308 - every line is escaped


# --- where a change came from ----------------------------------------------------------------------


@cache
def _actions(site: admin.AdminSite) -> tuple[dict[str, dict[str, tuple]], dict[str, list[tuple]]]:
    """Every admin action as (description, model options): by changelist path and name, and by name."""
    by_path: dict[str, dict[str, tuple]] = {}
    by_name: dict[str, list[tuple]] = {}
    for model, model_admin in site._registry.items():
        try:
            path = reverse(f"{site.name}:{model._meta.app_label}_{model._meta.model_name}_changelist")
        except NoReverseMatch:
            path = None
        for _func, name, description in model_admin._get_base_actions():
            entry = (description, model._meta)
            by_name.setdefault(name, []).append(entry)
            if path:
                by_path.setdefault(path, {})[name] = entry
    return by_path, by_name


def _action_text(description, opts) -> str:
    return str(description) % model_format_dict(opts)


def action_label(site: admin.AdminSite, name: str, path: str | None = None) -> str:
    """An admin action as its menu shows it: the action of the list it was clicked on, if known."""
    by_path, by_name = _actions(site)
    entry = by_path.get(path or "", {}).get(name)
    if entry:
        return _action_text(*entry)
    entries = by_name.get(name, [])
    texts = list(dict.fromkeys(_action_text(*entry) for entry in entries))
    if len(texts) > 1 and len({id(description) for description, _opts in entries}) == 1:
        # One action of every list, named after each list's model (Django's delete_selected).
        return str(entries[0][0]) % {"verbose_name": _("record"), "verbose_name_plural": _("records")}
    return " / ".join(texts) or name


def action_choices(site: admin.AdminSite) -> list[tuple[str, str]]:
    """The actions of the lists of tracked models: the only ones whose changes the log holds."""
    _by_path, by_name = _actions(site)
    names = [name for name, entries in by_name.items()
             if any(getattr(opts.model, "pgh_event_models", None) for _description, opts in entries)]
    return sorted(((name, action_label(site, name)) for name in names), key=lambda choice: choice[1])


PAGE_KINDS = {
    "add": gettext_lazy("added on its page"),
    "change": gettext_lazy("changed on its page"),
    "delete": gettext_lazy("deleted on its page"),
}


@lru_cache(maxsize=4096)
def _page_kind(path: str) -> str | None:
    """The admin page a plain form was sent from: add, change or delete."""
    try:
        url_name = resolve(path).url_name or ""
    except Resolver404:
        return None
    return url_name.rpartition("_")[2] if url_name.rpartition("_")[2] in PAGE_KINDS else None


def source_text(context: dict | None) -> str:
    context = context or {}
    source = context.get("source")
    if source is None:
        return _("Database (no context)")
    label = str(SOURCE_LABELS.get(source, source))
    if source == SOURCE_IMPORT and context.get("import_job"):
        return _("%(source)s #%(import)s") % {"source": label, "import": context["import_job"]}
    return label


def what_text(site: admin.AdminSite, context: dict | None) -> str:
    """What was done: the admin action clicked, the page sent, the job or the command run."""
    context = context or {}
    if context.get("action"):
        return action_label(site, context["action"], context.get("url"))
    if context.get("task"):
        return str(JOB_LABELS.get(context["task"], context["task"]))
    if context.get("command"):
        return context["command"]
    url = context.get("url")
    if url:
        kind = _page_kind(url)
        return str(PAGE_KINDS[kind]) if kind else url
    return EMPTY
