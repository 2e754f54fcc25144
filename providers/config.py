"""Reading a provider's merchant-account settings, with errors that name the missing variable."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.utils.translation import gettext as _

from providers.exceptions import ProviderMisconfigured


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
            variable = fields.get(name, {}).get("variable", f"{prefix}_{name}")
            raise ProviderMisconfigured(
                _("The environment variable %(variable)s is not set.") % {"variable": variable},
                provider=prefix.lower(),
            )
    return {name: spec["value"] for name, spec in fields.items()}
