"""Admin actions that ask for confirmation before they change anything (docs/style.md, rule 8).

The first click renders a page listing the selected records (and a form, e.g. for a reason);
only the confirming POST calls the service, once per record, and reports one message per outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

CONFIRM_FIELD = "confirmed"


def confirmed_action(
    model_admin: admin.ModelAdmin,
    request,
    queryset: QuerySet,
    *,
    title: str,
    explanation: str,
    perform: Callable[[Any, dict], str | None] | None = None,
    perform_all: Callable[[QuerySet, dict], list[tuple[int, str]]] | None = None,
    form_class: type[forms.Form] | None = None,
    limit: int = 500,
):
    """Show the confirmation page, or, once confirmed, run the change.

    `perform(obj, cleaned_data)` runs per object and returns a success message (or None), raising
    ValidationError / PermissionDenied with a message the clerk can act on. `perform_all` handles
    the whole selection at once (no limit) and returns (level, message) pairs.
    """
    form = form_class(request.POST if CONFIRM_FIELD in request.POST else None) if form_class else None
    if perform_all is not None:
        limit = 0
    if CONFIRM_FIELD in request.POST and (form is None or form.is_valid()):
        cleaned = form.cleaned_data if form else {}
        if perform_all is not None:
            for level, message in perform_all(queryset, cleaned):
                model_admin.message_user(request, message, level)
            return None
        done = 0
        for obj in queryset[:limit]:
            try:
                message = perform(obj, cleaned)
            except (ValidationError, PermissionDenied) as err:
                reason = "; ".join(err.messages) if isinstance(err, ValidationError) else str(err)
                model_admin.message_user(request, f"{obj}: {reason}", messages.ERROR)
                continue
            done += 1
            if message:
                model_admin.message_user(request, message, messages.SUCCESS)
        if done == 0:
            model_admin.message_user(request, _("Nothing was changed."), messages.WARNING)
        return None
    count = queryset.count()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "explanation": explanation,
        "objects": queryset[: limit or 50],
        "count": count,
        "over_limit": bool(limit) and count > limit,
        "limit": limit,
        "form": form or (form_class() if form_class else None),
        "opts": model_admin.model._meta,
        "action": request.POST.get("action"),
        "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        "confirm_field": CONFIRM_FIELD,
    }
    return TemplateResponse(request, "admin/confirm_action.html", context)
