"""What the admin index tells a clerk at a glance: today's and this month's money, what waits.

Every figure comes with the changelist URL whose filters select exactly the rows it counts, so
a number and the list it links to always agree.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from distributors.models import ErpSync, FundTransaction, FundTransactionStatus, FundTransactionType, SyncStatus
from orders.models import OrderStatus, RechargeOrder, UpstreamBalance

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Figure:
    label: str
    count: int
    amount: Decimal | None
    url: str


@dataclass(frozen=True)
class DayBar:
    day: datetime.date
    recharges: Decimal
    orders: Decimal


def _changelist(model, **filters) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _bounds(start: datetime.date, end: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    tz = timezone.get_current_timezone()
    return (
        datetime.datetime.combine(start, datetime.time.min, tzinfo=tz),
        datetime.datetime.combine(end, datetime.time.min, tzinfo=tz),
    )


def _range_filters(field: str, start: datetime.date, end: datetime.date) -> dict[str, str]:
    # Local midnights with their offset, exactly the bounds the figure was counted with.
    since, until = _bounds(start, end)
    return {f"{field}__gte": since.isoformat(), f"{field}__lt": until.isoformat()}


def period_figures(label: str, start: datetime.date, end: datetime.date) -> dict:
    """Approved recharges (by completion of approval) and orders (by creation) in [start, end)."""
    since, until = _bounds(start, end)
    recharges = FundTransaction.objects.filter(
        type=FundTransactionType.RECHARGE, status=FundTransactionStatus.APPROVED,
        decided_at__gte=since, decided_at__lt=until,
    ).aggregate(count=Count("id"), amount=Sum("amount"))
    by_provider_status = (
        RechargeOrder.objects.filter(created_at__gte=since, created_at__lt=until)
        .values("provider", "status")
        .annotate(count=Count("id"), amount=Sum("price_charged"))
        .order_by("provider", "status")
    )
    orders = [
        Figure(
            label=f"{dict(RechargeOrder._meta.get_field('provider').choices)[row['provider']]} · "
            f"{OrderStatus(row['status']).label}",
            count=row["count"],
            amount=row["amount"] or ZERO,
            url=_changelist(RechargeOrder, provider__exact=row["provider"], status__exact=row["status"],
                            **_range_filters("created_at", start, end)),
        )
        for row in by_provider_status
    ]
    return {
        "label": label,
        "recharges": Figure(
            label=str(FundTransactionType.RECHARGE.label),
            count=recharges["count"],
            amount=recharges["amount"] or ZERO,
            url=_changelist(FundTransaction, type__exact=FundTransactionType.RECHARGE,
                            status__exact=FundTransactionStatus.APPROVED, **_range_filters("decided_at", start, end)),
        ),
        "orders": orders,
        "orders_total": Figure(
            label="", count=sum(f.count for f in orders), amount=sum((f.amount for f in orders), ZERO),
            url=_changelist(RechargeOrder, **_range_filters("created_at", start, end)),
        ),
    }


def attention_figures() -> list[Figure]:
    """Everything that waits for a person, whenever it happened."""
    from django.utils.translation import gettext as _

    # One instant for the count and its link, so both select the same rows.
    day_ago = (timezone.now() - datetime.timedelta(days=1)).replace(microsecond=0)
    orders = RechargeOrder.objects.aggregate(
        failed=Count("id", filter=Q(status=OrderStatus.FAILED, finished_at__gte=day_ago)),
        unknown=Count("id", filter=Q(status=OrderStatus.UNKNOWN)),
        review=Count("id", filter=Q(status=OrderStatus.MANUAL_REVIEW)),
    )
    syncs = ErpSync.objects.aggregate(
        failed=Count("id", filter=Q(status=SyncStatus.FAILED)),
        review=Count("id", filter=Q(status=SyncStatus.MANUAL_REVIEW)),
    )
    pending = FundTransaction.objects.filter(status=FundTransactionStatus.PENDING_APPROVAL).count()
    return [
        Figure(_("Fund transactions waiting for approval"), pending, None,
               _changelist(FundTransaction, status__exact=FundTransactionStatus.PENDING_APPROVAL)),
        Figure(_("ERP syncs under manual review"), syncs["review"], None,
               _changelist(ErpSync, status__exact=SyncStatus.MANUAL_REVIEW)),
        Figure(_("Failed ERP syncs"), syncs["failed"], None, _changelist(ErpSync, status__exact=SyncStatus.FAILED)),
        Figure(_("Orders under manual review"), orders["review"], None,
               _changelist(RechargeOrder, status__exact=OrderStatus.MANUAL_REVIEW)),
        Figure(_("Orders with an unknown outcome"), orders["unknown"], None,
               _changelist(RechargeOrder, status__exact=OrderStatus.UNKNOWN)),
        Figure(_("Orders failed in the last 24 hours"), orders["failed"], None,
               _changelist(RechargeOrder, status__exact=OrderStatus.FAILED, finished_at__gte=day_ago.isoformat())),
    ]


def last_30_days(today: datetime.date) -> list[DayBar]:
    start = today - datetime.timedelta(days=29)
    since, until = _bounds(start, today + datetime.timedelta(days=1))
    tz = timezone.get_current_timezone()
    recharges = dict(
        FundTransaction.objects.filter(
            type=FundTransactionType.RECHARGE, status=FundTransactionStatus.APPROVED,
            decided_at__gte=since, decided_at__lt=until,
        ).annotate(day=TruncDate("decided_at", tzinfo=tz)).values("day").annotate(total=Sum("amount"))
        .values_list("day", "total")
    )
    orders = dict(
        RechargeOrder.objects.filter(created_at__gte=since, created_at__lt=until)
        .annotate(day=TruncDate("created_at", tzinfo=tz)).values("day").annotate(total=Sum("price_charged"))
        .values_list("day", "total")
    )
    days = [start + datetime.timedelta(days=n) for n in range(30)]
    return [DayBar(day, recharges.get(day) or ZERO, orders.get(day) or ZERO) for day in days]


def chart_bars(bars: list[DayBar], height: int = 120) -> list[dict]:
    """Bar geometry for the SVG chart (drawn server-side: the content security policy allows no scripts)."""
    peak = max([b.recharges for b in bars] + [b.orders for b in bars] + [Decimal("1")])
    return [
        {
            "day": bar.day,
            "x": index * 24,
            "recharge_height": int(bar.recharges / peak * height),
            "order_height": int(bar.orders / peak * height),
            "recharges": bar.recharges,
            "orders": bar.orders,
        }
        for index, bar in enumerate(bars)
    ]


def dashboard() -> dict:
    from django.utils.translation import gettext as _

    today = timezone.localdate()
    month_start = today.replace(day=1)
    tomorrow = today + datetime.timedelta(days=1)
    bars = last_30_days(today)
    return {
        "periods": [period_figures(_("Today"), today, tomorrow), period_figures(_("This month"), month_start, tomorrow)],
        "attention": attention_figures(),
        "upstream_balances": list(UpstreamBalance.objects.all()),
        "chart": chart_bars(bars),
        "chart_height": 120,
    }
