"""Typed results of upstream calls, the same shape for every vendor."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _


class Outcome(models.TextChoices):
    """What an upstream answer means for the business record, normalized across vendors."""

    ACCEPTED = "accepted", _("Accepted (processing upstream)")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    UNKNOWN = "unknown", _("Unknown")


@dataclass(frozen=True)
class CardSecretData:
    """A card handed back by an upstream. The PIN never appears in repr or logs."""

    card_number: str
    pin: str = field(repr=False)
    expires_at: datetime.date | None = None

    def __repr__(self) -> str:
        return f"CardSecretData(card_number={self.card_number!r}, pin='****', expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class ProviderResult:
    outcome: Outcome
    code: str = ""
    message: str = ""
    upstream_reference: str = ""
    client_reference: str = ""
    settlement_price: Decimal | None = None
    card_secrets: tuple[CardSecretData, ...] = ()
    items: tuple[ProviderResult, ...] = ()
    data: dict[str, Any] = field(default_factory=dict, repr=False)
