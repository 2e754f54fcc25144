"""Reads on orders that are more than a filter."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Sum

from orders.models import FINAL_ORDER_STATUSES, OrderStatus, RechargeOrder


@dataclass(frozen=True)
class BatchProgress:
    total: int
    counts: list[tuple[str, str, int]]  # (status, label, count), in lifecycle order, only those present
    finished: int  # SUCCEEDED or FAILED
    succeeded_amount: Decimal
    waiting_for_a_person: int

    @property
    def percent(self) -> int:
        return int(self.finished * 100 / self.total) if self.total else 0


def batch_progress(*, batch_id: int) -> BatchProgress:
    """How far a batch has got: items per status, in one query."""
    rows = (
        RechargeOrder.objects.filter(batch_id=batch_id)
        .values_list("status")
        .annotate(n=Count("id"), amount=Sum("price_charged"))
        .order_by()
    )
    by_status = {status: (n, amount) for status, n, amount in rows}
    counts = [(status.value, str(status.label), by_status[status][0]) for status in OrderStatus if status in by_status]
    return BatchProgress(
        total=sum(n for n, _amount in by_status.values()),
        counts=counts,
        finished=sum(by_status[s][0] for s in FINAL_ORDER_STATUSES if s in by_status),
        succeeded_amount=by_status.get(OrderStatus.SUCCEEDED, (0, Decimal("0.00")))[1] or Decimal("0.00"),
        waiting_for_a_person=by_status.get(OrderStatus.MANUAL_REVIEW, (0, None))[0],
    )
