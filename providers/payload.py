"""Building vendor payloads: compact JSON with exact money, and input checks made before sending.

The checks raise InvalidRequest naming the offending field, so a bad input is refused before
anything is recorded or leaves the building. Messages are shown to users, hence translated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar

from django.utils.translation import gettext as _

from providers.exceptions import InvalidRequest

CENT = Decimal("0.01")

EnumType = TypeVar("EnumType", bound=Enum)


def compact_json(value: Any) -> str:
    """JSON with compact separators and raw UTF-8, where a Decimal is written as an exact number.

    The standard encoder cannot write a Decimal as a number (only as a float, which would lose
    the exact amount), so mappings and sequences are walked here and everything else is left to it.
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write {value} as a JSON number")
        return format(value, "f")
    if isinstance(value, Mapping):
        members = (f"{json.dumps(str(key), ensure_ascii=False)}:{compact_json(item)}" for key, item in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return "[" + ",".join(compact_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def answer_decimal(value: Any) -> Decimal | None:
    """An amount read from an upstream's answer: None when absent, ValueError (an unreadable answer) when not a number."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation as err:
        raise ValueError(f"not an amount: {value!r}") from err


def checked_text(value: str | None, *, field: str, label: str, max_length: int | None = None, required: bool = True) -> str:
    """The stripped text, or InvalidRequest when it is missing (and required) or too long."""
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(_("%(label)s must be text.") % {"label": label}, field=field)
    text = (value or "").strip()
    if required and not text:
        raise InvalidRequest(_("%(label)s is required.") % {"label": label}, field=field)
    if max_length is not None and len(text) > max_length:
        raise InvalidRequest(
            _("%(label)s must be at most %(max_length)d characters.") % {"label": label, "max_length": max_length},
            field=field,
        )
    return text


def checked_money(
    value: Decimal | int | None,
    *,
    field: str,
    label: str,
    maximum: Decimal | None = None,
) -> Decimal:
    """A positive amount with at most two decimals (no float, no rounding), quantized to cents."""
    if value is None:
        raise InvalidRequest(_("%(label)s is required.") % {"label": label}, field=field)
    # A float has already lost the exact amount; refuse it rather than guess.
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise InvalidRequest(_("%(label)s must be an exact decimal amount.") % {"label": label}, field=field)
    amount = Decimal(value)
    try:
        cents = amount.quantize(CENT)
    except InvalidOperation as err:
        raise InvalidRequest(_("%(label)s is not a valid amount.") % {"label": label}, field=field) from err
    if not amount.is_finite() or cents != amount:
        raise InvalidRequest(_("%(label)s may have at most two decimal places.") % {"label": label}, field=field)
    if cents <= 0:
        raise InvalidRequest(_("%(label)s must be greater than zero.") % {"label": label}, field=field)
    if maximum is not None and cents > maximum:
        raise InvalidRequest(
            _("%(label)s must not exceed %(maximum)s.") % {"label": label, "maximum": maximum}, field=field
        )
    return cents


def checked_choice(value: Any, choices: type[EnumType], *, field: str, label: str) -> EnumType:
    """The enum member for value (a member or its raw value), or InvalidRequest."""
    if value is None or value == "":
        raise InvalidRequest(_("%(label)s is required.") % {"label": label}, field=field)
    # bool is an int: True must not pass as 1.
    if isinstance(value, bool):
        raise InvalidRequest(_("%(label)s has an invalid value.") % {"label": label}, field=field)
    try:
        return choices(value)
    except ValueError as err:
        raise InvalidRequest(_("%(label)s has an invalid value.") % {"label": label}, field=field) from err
