"""Reading a provider's merchant-account settings, with errors that name the missing variable."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from django.conf import settings
from django.utils.translation import gettext as _

from providers.exceptions import InvalidRequest, ProviderMisconfigured, SignatureInvalid


def setting_variable(prefix: str, account: str, name: str) -> str:
    """The environment variable behind one setting of a merchant account, to name it in an error.

    Named as config.provider_settings names them when the account or field is not in settings.
    """
    spec = settings.PROVIDERS.get(prefix, {}).get(account, {}).get(name) or {}
    stem = prefix if account == "default" else f"{prefix}_{account.upper()}"
    return spec.get("variable") or f"{stem}_{name}"


def account_settings(prefix: str, account: str, *, required: Iterable[str]) -> dict[str, str | None]:
    """Return {FIELD: value} for one merchant account of a provider (settings.PROVIDERS[prefix]).

    Raises ProviderMisconfigured naming the environment variable of the first missing required
    field, so the error appears when the feature is used rather than at import time.
    """
    accounts = settings.PROVIDERS.get(prefix, {})
    if account not in accounts:
        raise ProviderMisconfigured(
            _("No merchant account %(account)s is configured for %(prefix)s: add it to %(variable)s.")
            % {"account": account, "prefix": prefix, "variable": f"{prefix}_ACCOUNTS"},
            provider=prefix.lower(),
        )
    fields = accounts[account]
    for name in required:
        if not fields.get(name, {}).get("value"):
            raise ProviderMisconfigured(
                _("The environment variable %(variable)s is not set.") % {"variable": setting_variable(prefix, account, name)},
                provider=prefix.lower(),
            )
    return {name: spec["value"] for name, spec in fields.items()}


def callback_account(prefix: str, field: str, value: str) -> str:
    """The merchant account of a provider whose `field` setting equals a callback's `value`.

    This is how a callback says whose it is (the redemption platform's businessId, 17bst's
    agtPhone): it is then verified with that account's keys only and moves only that account's
    orders. SignatureInvalid when no account matches; ProviderMisconfigured when several do,
    as their callbacks could not be told apart.
    """
    accounts = settings.PROVIDERS.get(prefix, {})
    matching = [name for name, fields in accounts.items() if value and fields.get(field, {}).get("value") == value]
    if not matching:
        raise SignatureInvalid(
            _("No merchant account of %(prefix)s matches the %(field)s of this callback.")
            % {"prefix": prefix, "field": field},
            provider=prefix.lower(),
            operation="callback",
        )
    if len(matching) > 1:
        raise ProviderMisconfigured(
            _("%(variables)s are the same: the callbacks of these merchant accounts cannot be told apart.")
            % {"variables": ", ".join(setting_variable(prefix, name, field) for name in matching)},
            provider=prefix.lower(),
        )
    return matching[0]


def callback_fields(
    received: Mapping[str, object], shapes: Mapping[str, re.Pattern[str]], *, required: Iterable[str], provider: str
) -> dict[str, str]:
    """The fields of a callback (headers or form fields) by the names of `shapes`, each checked against its shape.

    Names are matched without regard to case, as HTTP headers are; a name given twice with two
    values is refused. An absent or empty field is "" (InvalidRequest if it is `required`); any
    other value must match its shape entirely, or InvalidRequest names the field and the shape.
    Callers check the shapes before anything is signed, looked up or stored under the values.
    """
    by_name: dict[str, str] = {}
    for name, value in received.items():
        key, text = str(name).lower(), "" if value is None else str(value)
        if by_name.get(key, text) != text:
            raise InvalidRequest(
                _("The callback's %(field)s is given twice.") % {"field": name}, field=str(name), provider=provider
            )
        by_name[key] = text
    fields = {name: by_name.get(name.lower(), "") for name in shapes}
    for name in required:
        if not fields[name]:
            raise InvalidRequest(_("The callback's %(field)s is missing.") % {"field": name}, field=name, provider=provider)
    for name, shape in shapes.items():
        if fields[name] and not shape.fullmatch(fields[name]):
            raise InvalidRequest(
                _("The callback's %(field)s does not have the expected form %(form)s.")
                % {"field": name, "form": shape.pattern},
                field=name,
                provider=provider,
            )
    return fields
