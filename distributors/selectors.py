"""Reads that are more than a filter."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from distributors.models import ZERO, Account, LedgerEntry


@dataclass(frozen=True)
class Statement:
    account: Account
    start: datetime.date
    end: datetime.date
    opening_balance: Decimal
    closing_balance: Decimal
    entries: QuerySet[LedgerEntry]


def _day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def account_statement(*, account: Account, start: datetime.date, end: datetime.date) -> Statement:
    """Entries of one account from `start` to `end` (inclusive days), with the running balance.

    Each entry stores the balance right after it, so the running balance needs no window query
    and the opening balance is the balance after the last entry before the period.
    """
    period_start, period_end = _day_start(start), _day_start(end + datetime.timedelta(days=1))
    before = account.entries.filter(created_at__lt=period_start).order_by("-id").values_list("balance_after", flat=True)
    opening = before.first() or ZERO
    entries = (
        account.entries.filter(created_at__gte=period_start, created_at__lt=period_end)
        .select_related("created_by", "cause_type")
        .order_by("id")
    )
    last = entries.reverse().values_list("balance_after", flat=True).first()
    return Statement(
        account=account,
        start=start,
        end=end,
        opening_balance=opening,
        closing_balance=last if last is not None else opening,
        entries=entries,
    )
