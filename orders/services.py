"""Every write on orders: creating, placing (holding the price), submitting, applying answers,
reconciling, callbacks, manual decisions, products, and card PIN disclosure.

Money and status move together: the hold on placement, and its release when an order fails, are
ledger entries in the same transaction as the status change that causes them. Every status
change goes through `order_transition` on a locked row.
"""

from __future__ import annotations

import datetime
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, router, transaction
from django.db.models import CharField, Exists, F, OuterRef, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.translation import gettext as _

from distributors.exceptions import InsufficientFunds
from distributors.models import AccountKind, Distributor, DistributorStatus, EntryKind
from distributors.services import Posting, ledger_post
from orders.models import (
    ORDER_TRANSITIONS,
    CallbackNonce,
    CardSecret,
    OrderBatch,
    OrderKind,
    OrderStatus,
    PinDisclosure,
    Product,
    RechargeOrder,
    UpstreamBalance,
)
from orders.pins import decrypt_pin, encrypt_pin
from providers.bst17.client import Bst17Client, Bst17QueryTooFrequent, CardInfoQuery, EcouponPurchase
from providers.exceptions import Consequence, InvalidRequest, ProviderError, ProviderNotReached, consequence_of
from providers.exchange.client import (
    BatchCharge,
    BatchItem,
    ExchangeCallback,
    ExchangeClient,
    OrderInfoQuery,
    VipCharge,
)
from providers.models import Provider, ProviderCall
from providers.results import CardSecretData, Outcome, ProviderResult

logger = logging.getLogger(__name__)

OUTCOME_STATUS = {
    Outcome.ACCEPTED: OrderStatus.ACCEPTED,
    Outcome.SUCCEEDED: OrderStatus.SUCCEEDED,
    Outcome.FAILED: OrderStatus.FAILED,
    Outcome.UNKNOWN: OrderStatus.UNKNOWN,
}


class OrderTransitionRefused(ValidationError):
    pass


# --- creating and placing ---------------------------------------------------------------------


@dataclass(frozen=True)
class OrderTerms:
    """What an order sends and what it holds, from its product, quantity and stated face value."""

    face_value: Decimal | None
    price: Decimal


def order_terms(*, product: Product, quantity: int, face_value: Decimal | None) -> OrderTerms:
    """The one rule for an order's price: the stated face value for open-amount products, else the sale price.

    A face value is sent upstream (batch `spec`), so it is taken only where the product takes one: on
    a fixed-price product any other face value would be charged upstream differently from what we
    hold. The product's own face value, copied from the product list, means nothing more and is dropped.
    """
    if product.needs_face_value:
        if face_value is None or face_value <= 0:
            raise ValidationError({"face_value": _("This product needs the face value to charge.")})
        unit = face_value
    else:
        if face_value is not None and face_value != product.face_value:
            raise ValidationError({"face_value": _("This product has a fixed price; leave the face value empty.")})
        face_value = None
        if product.sale_price is None:
            raise ValidationError({"product": _("This product has no price to distributors yet.")})
        unit = product.sale_price
    return OrderTerms(face_value=face_value, price=(unit * quantity).quantize(Decimal("0.01")))


def order_price(*, product: Product, quantity: int, face_value: Decimal | None) -> Decimal:
    """What the distributor pays (order_terms' price)."""
    return order_terms(product=product, quantity=quantity, face_value=face_value).price


def order_check(*, distributor: Distributor, product: Product, target_account: str, quantity: int) -> None:
    """What an order must be, whoever writes it (form, batch page, import, placement)."""
    if distributor.status != DistributorStatus.ACTIVE:
        raise ValidationError({"distributor": _("Distributor %(distributor)s is %(status)s: it gets no orders.") % {
            "distributor": distributor.code, "status": distributor.get_status_display()}})
    if not product.active:
        raise ValidationError({"product": _("This product is not on sale.")})
    if product.kind == OrderKind.DIRECT_CHARGE:
        if not target_account.strip():
            raise ValidationError({"target_account": _("A direct charge needs the account to charge.")})
        if quantity != 1:
            raise ValidationError({"quantity": _("A direct charge is for exactly one account.")})
    if quantity is None or quantity < 1:
        raise ValidationError({"quantity": _("The quantity must be at least 1.")})


def order_create(
    *,
    distributor: Distributor,
    product: Product,
    actor,
    target_account: str = "",
    mobile: str = "",
    attach_values: str = "",
    quantity: int = 1,
    face_value: Decimal | None = None,
    batch: OrderBatch | None = None,
) -> RechargeOrder:
    """Record a draft order; its order number (client reference) is fixed now, before anything is sent."""
    order_check(distributor=distributor, product=product, target_account=target_account, quantity=quantity)
    terms = order_terms(product=product, quantity=quantity, face_value=face_value)
    order = RechargeOrder(
        distributor=distributor,
        product=product,
        provider=product.provider,
        merchant_account=product.merchant_account,
        kind=product.kind,
        batch=batch,
        target_account=target_account.strip(),
        mobile=mobile.strip(),
        attach_values=attach_values.strip(),
        quantity=quantity,
        face_value=terms.face_value,
        price_charged=terms.price,
        created_by=actor,
    )
    order.full_clean()
    order.save()
    return order


# What a clerk may change on a draft order; the rest follows from these (price, provider, kind).
ORDER_EDITABLE_FIELDS = ("distributor", "product", "target_account", "mobile", "attach_values", "quantity",
                         "face_value")


@transaction.atomic
def order_update(*, order_id: int, **changes) -> RechargeOrder:
    """Change a draft order and price it again, through the same checks as order_create.

    Saved only while the order is still a draft (under its row lock): an edit racing a placement
    either lands before it, and is what gets held, or is refused. An item of a batch is fixed: its
    product and distributor are the batch's.
    """
    unknown = set(changes) - set(ORDER_EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable on an order: {sorted(unknown)}")
    order = _locked_orders().select_related("distributor", "product").get(pk=order_id)
    if order.status != OrderStatus.DRAFT:
        raise OrderTransitionRefused(
            _("Order %(order)s is %(status)s: only a draft can be changed.")
            % {"order": order, "status": order.get_status_display()}
        )
    if order.batch_id:
        raise OrderTransitionRefused(
            _("Order %(order)s belongs to batch %(batch)s: its items are not edited one by one.")
            % {"order": order, "batch": order.batch}
        )
    for name, value in changes.items():
        setattr(order, name, value.strip() if isinstance(value, str) else value)
    order_check(distributor=order.distributor, product=order.product, target_account=order.target_account,
                 quantity=order.quantity)
    terms = order_terms(product=order.product, quantity=order.quantity, face_value=order.face_value)
    order.face_value, order.price_charged = terms.face_value, terms.price
    order.provider, order.merchant_account, order.kind = (
        order.product.provider, order.product.merchant_account, order.product.kind)
    order.full_clean()
    order.save(update_fields=[*changes, "face_value", "price_charged", "provider", "merchant_account", "kind"])
    return order


def _status_changes(to_status: str, *, reason: str = "", actor=None, **fields) -> dict:
    """The columns a move to `to_status` sets, besides any money it moves."""
    now = timezone.now()
    changes: dict = {"status": to_status}
    if reason:
        changes["status_reason"] = reason[:2000]
    if to_status in (OrderStatus.SUCCEEDED, OrderStatus.FAILED):
        changes.update(finished_at=now, next_query_at=None)
    if to_status in (OrderStatus.ACCEPTED, OrderStatus.UNKNOWN):
        changes["next_query_at"] = now + datetime.timedelta(seconds=settings.ORDER_QUERY_INTERVAL_SECONDS)
    if actor is not None and to_status in (OrderStatus.SUCCEEDED, OrderStatus.FAILED):
        changes["decided_by"] = actor if getattr(actor, "pk", None) else None
    changes.update(fields)
    return changes


def order_transition(order: RechargeOrder, to_status: str, *, reason: str = "", actor=None, **fields) -> None:
    """Move a locked order to a new status. A move to FAILED releases the held price in the same transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("order_transition needs a transaction holding the order's row lock")
    if to_status not in ORDER_TRANSITIONS[order.status]:
        raise OrderTransitionRefused(
            _("Order %(order)s cannot go from %(from)s to %(to)s.")
            % {"order": order, "from": order.get_status_display(), "to": OrderStatus(to_status).label}
        )
    if to_status == OrderStatus.FAILED and order.queued_at is not None and order.price_charged > 0:
        ledger_post(
            distributor=order.distributor,
            postings=[Posting(kind=AccountKind.PREPAID, amount=order.price_charged)],
            entry_kind=EntryKind.ORDER_RELEASE,
            actor=actor,
            cause=order,
            memo=_("Order %(order)s failed: payment released") % {"order": order},
        )
    changes = _status_changes(to_status, reason=reason, actor=actor, **fields)
    for name, value in changes.items():
        setattr(order, name, value)
    # Only what moved: the row was read under the lock, so the other columns are as stored.
    order.save(update_fields=list(changes))


def _move_without_money(
    lookup: dict, to_status: str, *, from_statuses: Iterable[str], reason: str = "", actor=None, **fields
) -> bool:
    """A move that touches no money (anything but FAILED), as one conditional UPDATE: no read, no lock.

    The condition on the status does what the row lock and the check do in `order_transition`: a
    concurrent move makes this one wait for the row, then find its status changed and update
    nothing. True if an order moved.
    """
    if to_status == OrderStatus.FAILED:
        raise ValueError("a move to FAILED may release money: use order_transition on a locked row")
    changes = _status_changes(to_status, reason=reason, actor=actor, **fields)
    return bool(_update_if_status(lookup, _statuses_moving_to(to_status, from_statuses), changes))


def _statuses_moving_to(to_status: str, from_statuses: Iterable[str]) -> list[str]:
    """Those of `from_statuses` from which the lifecycle allows a move to `to_status`."""
    return [status for status in from_statuses if to_status in ORDER_TRANSITIONS[status]]


def _update_if_status(lookup: dict, statuses: Sequence[str], changes: dict) -> list[int]:
    """UPDATE the orders matching `lookup` whose status is one of `statuses`; the ids updated.

    `lookup` holds field names, each equal to a value or, with `__in`, to one of a list. Written
    as SQL rather than with QuerySet.update(), which also returns no rows: this runs at least
    twice per order (the upstream's answer, then its callback), and building and compiling the
    ORM statement cost more CPU than PostgreSQL spends carrying it out.
    """
    connection = connections[router.db_for_write(RechargeOrder)]
    update, arguments = _conditional_update(connection, lookup, statuses, changes)
    with connection.cursor() as cursor:
        cursor.execute(f"{update} RETURNING {connection.ops.quote_name(RechargeOrder._meta.pk.column)}", arguments)
        return sorted(row[0] for row in cursor.fetchall())


def _update_if_status_and_nonce_fresh(
    nonce: tuple[str, str], lookup: dict, statuses: Sequence[str], changes: dict
) -> tuple[bool, bool]:
    """Record a callback's (provider, nonce) and, only if it was new, `_update_if_status`: one statement.

    Returns (the nonce was new, an order moved). A callback is answered for every order, and
    this is the whole of what most of them write: one statement and one commit rather than one
    for the nonce and one for the order. A replayed nonce is refused by the unique constraint
    (ON CONFLICT DO NOTHING inserts nothing, so nothing moves); two deliveries of one nonce at
    once wait for each other on the constraint, and the second finds it taken.
    """
    connection = connections[router.db_for_write(RechargeOrder)]
    update, arguments = _conditional_update(connection, lookup, statuses, changes)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH fresh AS ({_nonce_insert(connection)} RETURNING 1), "
            f"moved AS ({update} AND EXISTS (SELECT FROM fresh) RETURNING 1) "
            "SELECT EXISTS (SELECT FROM fresh), EXISTS (SELECT FROM moved)",
            [*nonce, timezone.now(), *arguments],
        )
        return tuple(cursor.fetchone())


def _conditional_update(connection, lookup: dict, statuses: Sequence[str], changes: dict) -> tuple[str, list]:
    """The UPDATE of `_update_if_status` without its RETURNING clause, and its arguments."""
    meta = RechargeOrder._meta
    assignments, values = [], []
    for name, value in changes.items():
        column = meta.get_field(name)
        assignments.append(f"{connection.ops.quote_name(column.column)} = %s")
        values.append(_db_value(column, value, connection))
    conditions, arguments = ["status = ANY(%s)"], [list(statuses)]
    for key, value in lookup.items():
        name, _sep, operator = key.partition("__")
        column = meta.pk if name == "pk" else meta.get_field(name)
        if operator == "in":
            conditions.append(f"{connection.ops.quote_name(column.column)} = ANY(%s)")
            arguments.append([column.get_db_prep_value(item, connection) for item in value])
        elif not operator:
            conditions.append(f"{connection.ops.quote_name(column.column)} = %s")
            arguments.append(column.get_db_prep_value(value, connection))
        else:
            raise ValueError(f"unsupported lookup {key!r}")
    update = (
        f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608 - names from the model
        f"WHERE {' AND '.join(conditions)}"
    )
    return update, [*values, *arguments]


def _db_value(column, value, connection):
    """A value as a column of RechargeOrder stores it (a related row by its key)."""
    if column.is_relation:
        value = getattr(value, "pk", value)
    return column.get_db_prep_save(value, connection)


def _update_each_if_status(changes_by_id: dict[int, dict], statuses: Sequence[str]) -> list[int]:
    """`_update_if_status` with each order's own values: one UPDATE ... FROM unnest(...) per set of columns.

    (QuerySet.bulk_update() writes a CASE per column and row, and building it cost more CPU than
    the statements it replaces.)
    """
    connection = connections[router.db_for_write(RechargeOrder)]
    meta, quote = RechargeOrder._meta, connection.ops.quote_name
    by_columns: dict[tuple[str, ...], list[int]] = {}
    for pk, changes in changes_by_id.items():
        by_columns.setdefault(tuple(changes), []).append(pk)
    updated = []
    for names, pks in by_columns.items():
        columns = [meta.get_field(name) for name in names]
        arrays = [list(pks)] + [
            [_db_value(column, changes_by_id[pk][name], connection) for pk in pks]
            for name, column in zip(names, columns, strict=True)
        ]
        types = [meta.pk.db_type(connection)] + [column.db_type(connection) for column in columns]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {quote(meta.db_table)} AS o SET "  # noqa: S608 - names and types from the model
                + ", ".join(f"{quote(column.column)} = v.{quote(column.column)}" for column in columns)
                + f" FROM unnest({', '.join(f'%s::{kind}[]' for kind in types)})"
                + f" AS v({quote(meta.pk.column)}, {', '.join(quote(column.column) for column in columns)})"
                + f" WHERE o.{quote(meta.pk.column)} = v.{quote(meta.pk.column)} AND o.status = ANY(%s)"
                + f" RETURNING o.{quote(meta.pk.column)}",
                [*arrays, list(statuses)],
            )
            updated.extend(row[0] for row in cursor.fetchall())
    return sorted(updated)


def _locked_orders():
    """Orders read with their own row locked, and only that row.

    A plain FOR UPDATE over a join would lock the distributor's row too, and every status change of
    every order of that distributor would wait in line for it; ledger_post locks the distributor's
    accounts itself when money moves.
    """
    return RechargeOrder.objects.select_for_update(of=("self",))


@dataclass
class PlaceResult:
    placed: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)


def _hold_and_queue(order: RechargeOrder, actor) -> None:
    """Price the locked draft as it is now, hold that price and queue it.

    Priced again here, whatever was stored when it was written: what is held is always what the one
    pricing rule gives for what will be sent (product, quantity, face value), and a distributor
    suspended or a product taken off sale since then stops it.
    """
    order_check(distributor=order.distributor, product=order.product, target_account=order.target_account,
                 quantity=order.quantity)
    terms = order_terms(product=order.product, quantity=order.quantity, face_value=order.face_value)
    if terms.face_value != order.face_value:
        raise ValidationError({"face_value": _("This product has a fixed price; leave the face value empty.")})
    order.price_charged = terms.price
    if order.price_charged > 0:
        ledger_post(
            distributor=order.distributor,
            postings=[Posting(kind=AccountKind.PREPAID, amount=-order.price_charged)],
            entry_kind=EntryKind.ORDER_HOLD,
            actor=actor,
            cause=order,
            memo=_("Order %(order)s: payment held") % {"order": order},
        )
    order_transition(order, OrderStatus.QUEUED, queued_at=timezone.now(), price_charged=order.price_charged)


def orders_place(*, ids: Iterable[int], actor) -> PlaceResult:
    """DRAFT -> QUEUED: hold each order's price on the distributor's balance and queue its submission.

    Each order is its own savepoint: one without funds is refused and the others go ahead. Orders
    are committed in groups of ORDER_SUBMIT_CHUNK_SIZE, each group with the one job that submits
    it, so an order is QUEUED exactly when a job exists to send it.
    """
    from orders.tasks import submit_orders

    result = PlaceResult()
    ids = list(ids)
    for start in range(0, len(ids), settings.ORDER_SUBMIT_CHUNK_SIZE):
        with transaction.atomic():
            placed = []
            for order_id in ids[start : start + settings.ORDER_SUBMIT_CHUNK_SIZE]:
                try:
                    with transaction.atomic():
                        _place_one(order_id, actor)
                except (ValidationError, InsufficientFunds) as err:
                    result.refused[order_id] = "; ".join(err.messages)
                else:
                    placed.append(order_id)
            if placed:
                submit_orders.defer(order_ids=placed)
        result.placed.extend(placed)
    return result


def _place_one(order_id: int, actor) -> None:
    order = _locked_orders().select_related("distributor", "product").get(pk=order_id)
    if order.status != OrderStatus.DRAFT:
        raise OrderTransitionRefused(_("It is %(status)s, not a draft.") % {"status": order.get_status_display()})
    if order.batch_id:
        raise OrderTransitionRefused(_("It belongs to batch %(batch)s: place the batch.") % {"batch": order.batch})
    _hold_and_queue(order, actor)


@dataclass(frozen=True)
class BatchItemData:
    target_account: str
    attach_values: str = ""
    face_value: Decimal | None = None


def _batch_product_check(product: Product) -> None:
    if product.provider != Provider.EXCHANGE or product.kind != OrderKind.DIRECT_CHARGE:
        raise ValidationError({"product": _("A batch is for a direct-charge product of the redemption platform.")})


@transaction.atomic
def batch_create(
    *,
    distributor: Distributor,
    product: Product,
    actor,
    items: Sequence[BatchItemData],
    batch_code: str = "",
    remark: str = "",
    chunk_size: int | None = None,
) -> OrderBatch:
    """Record a batch and one draft order per item, all or nothing. Placing it is a separate step."""
    _batch_product_check(product)
    if not items:
        raise ValidationError(_("A batch needs at least one item."))
    batch = OrderBatch(distributor=distributor, product=product, remark=remark.strip(), created_by=actor)
    if batch_code.strip():
        batch.batch_code = batch_code.strip()
    if chunk_size:
        batch.chunk_size = chunk_size
    batch.full_clean()
    batch.save()
    for item in items:
        order_create(
            distributor=distributor, product=product, actor=actor, target_account=item.target_account,
            attach_values=item.attach_values, face_value=item.face_value, batch=batch,
        )
    return batch


@transaction.atomic
def batch_place(*, batch_id: int, actor) -> int:
    """Hold the price of every draft item of a batch and queue the chunks, all or nothing."""
    from orders.tasks import submit_batch_chunk

    batch = OrderBatch.objects.select_for_update().get(pk=batch_id)
    orders = list(
        _locked_orders().select_related("distributor", "product")
        .filter(batch=batch, status=OrderStatus.DRAFT).order_by("pk")
    )
    if not orders:
        raise OrderTransitionRefused(_("Batch %(batch)s has no draft items to place.") % {"batch": batch})
    _batch_product_check(batch.product)
    for order in orders:
        # The batch sends its own product for every item: an item priced on anything else is refused.
        if (order.product_id, order.distributor_id) != (batch.product_id, batch.distributor_id):
            raise OrderTransitionRefused(
                _("Item %(order)s is not for the batch's distributor and product.") % {"order": order}
            )
        _hold_and_queue(order, actor)
    for number, start in enumerate(range(0, len(orders), batch.chunk_size), start=1):
        chunk = [order.pk for order in orders[start : start + batch.chunk_size]]
        submit_batch_chunk.defer(batch_id=batch.pk, chunk_number=number, order_ids=chunk)
    return len(orders)


# --- submitting ---------------------------------------------------------------------------------


def _claim(order_ids: Sequence[int]) -> list[int]:
    """QUEUED -> SUBMITTING for whichever of these orders are still queued; returns those claimed.

    One conditional UPDATE ... RETURNING. Two workers (or two clicks) racing for the same order:
    the second UPDATE waits for the first's row lock, then finds the status changed and skips the
    row, so exactly one of them claims it and only that one sends.
    """
    if not order_ids:
        return []
    return _update_if_status(
        {"pk__in": order_ids}, [OrderStatus.QUEUED],
        {"status": OrderStatus.SUBMITTING, "submitted_at": timezone.now()},
    )


def _apply(
    order_id: int,
    status: str,
    *,
    from_statuses: Iterable[str],
    reason: str = "",
    upstream_order_no: str = "",
    settlement_price: Decimal | None = None,
    cards: Sequence[CardSecretData] = (),
    actor=None,
) -> bool:
    """Apply an answer to an order if it is still in one of `from_statuses`; False if it had moved on."""
    if status != OrderStatus.FAILED and not cards:
        return _move_without_money({"pk": order_id}, status, from_statuses=from_statuses, reason=reason, actor=actor,
                                   **_answer_fields(upstream_order_no, settlement_price))
    with transaction.atomic():
        order = _locked_orders().get(pk=order_id)
        return _apply_locked(
            order, status, from_statuses=from_statuses, reason=reason, upstream_order_no=upstream_order_no,
            settlement_price=settlement_price, cards=cards, actor=actor,
        )


def _apply_locked(
    order: RechargeOrder,
    status: str,
    *,
    from_statuses: Iterable[str],
    reason: str = "",
    upstream_order_no: str = "",
    settlement_price: Decimal | None = None,
    cards: Sequence[CardSecretData] = (),
    actor=None,
) -> bool:
    """`_apply` for a caller that already holds the order's row lock."""
    if order.status not in from_statuses or order.status == status:
        return False
    order_transition(order, status, reason=reason, actor=actor, **_answer_fields(upstream_order_no, settlement_price))
    if cards:
        _store_cards(order, cards)
    return True


def _answer_fields(upstream_order_no: str, settlement_price: Decimal | None) -> dict:
    """What an upstream's answer adds to the order, beside its status."""
    fields: dict = {}
    if upstream_order_no:
        fields["upstream_order_no"] = upstream_order_no[:64]
    if settlement_price is not None:
        fields["settlement_price"] = settlement_price
    return fields


def _store_cards(order: RechargeOrder, cards: Sequence[CardSecretData]) -> None:
    CardSecret.objects.bulk_create(
        [
            CardSecret(order=order, card_number=card.card_number, pin_ciphertext=encrypt_pin(card.pin),
                       expires_at=card.expires_at)
            for card in cards
        ],
        ignore_conflicts=True,  # a repeated answer carries the same cards
    )


def _client(order: RechargeOrder, **options):
    if order.provider == Provider.EXCHANGE:
        return ExchangeClient(merchant_account=order.merchant_account, **options)
    return Bst17Client(merchant_account=order.merchant_account, **options)


def _apply_result(order_id: int, result: ProviderResult, *, from_statuses: Iterable[str]) -> str:
    status = OUTCOME_STATUS[result.outcome]
    _apply(
        order_id,
        status,
        from_statuses=from_statuses,
        reason=result.message if status != OrderStatus.SUCCEEDED else "",
        upstream_order_no=result.upstream_reference,
        settlement_price=result.settlement_price,
        cards=result.card_secrets,
    )
    return status


# What a failed call does to the orders it carried (providers.exceptions.consequence_of is the rule):
# only FAILED releases their held price.
STATUS_AFTER_ERROR = {
    Consequence.SEND_AGAIN: OrderStatus.QUEUED,
    Consequence.NOT_CARRIED_OUT: OrderStatus.FAILED,
    Consequence.MAYBE_CARRIED_OUT: OrderStatus.UNKNOWN,
}


def _apply_error(order_ids: Sequence[int], err: ProviderError) -> str:
    """Map a failed call to a status for every order it carried; re-raises when a retry is safe."""
    status = STATUS_AFTER_ERROR[consequence_of(err)]
    for order_id in order_ids:
        _apply(order_id, status, from_statuses=[OrderStatus.SUBMITTING], reason=str(err))
    if status == OrderStatus.QUEUED:
        raise err
    return status


def orders_submit(*, order_ids: Sequence[int]) -> dict[int, str]:
    """Send queued single orders upstream, one call each (the job body). Returns each claimed order's status.

    Orders placed together are submitted by one job, so the job queue's own work, the claim and the
    read are done once for all of them; each order is still its own call, with its own answer in
    the call log and its own status (the job's acceptances are written together: _Acceptances).
    Orders already claimed elsewhere are left out.
    """
    claimed = _claim(order_ids)
    orders = list(RechargeOrder.objects.select_related("product").filter(pk__in=claimed).order_by("pk"))
    statuses: dict[int, str] = {}
    clients: dict[tuple[str, str], ExchangeClient | Bst17Client] = {}
    accepted = _Acceptances()
    # Past this, an order still SUBMITTING would be taken for one left by a stopped worker.
    deadline = time.monotonic() + settings.ORDER_SUBMIT_STALE_SECONDS / 2
    try:
        for position, order in enumerate(orders):
            if statuses and time.monotonic() > deadline:
                _queue_again([later.pk for later in orders[position:]])
                break
            client = clients.get((order.provider, order.merchant_account))
            if client is None:
                client = clients[(order.provider, order.merchant_account)] = _client(order)
            try:
                statuses[order.pk] = _submit_one(order, client, accepted)
            except ProviderNotReached as err:
                # Nothing left this process: the orders not yet sent go back to the queue with this
                # one, and _apply_error raises for the job to be retried later (it claims only what
                # is queued).
                _apply_error([later.pk for later in orders[position:]], err)
            accepted.write_if_due()
    finally:
        accepted.write()
    return statuses


class _Acceptances:
    """Orders the upstream accepted ("processing"), moved SUBMITTING -> ACCEPTED together.

    An acceptance moves no money and is not final, so the acceptances of one job are written by one
    UPDATE (at the latest every WRITE_SECONDS, and when the job ends, however it ends) rather than
    one statement each: a statement is the most expensive thing a submission does in the database.
    Each answer is already in the call log, written as it arrived. An order settled meanwhile by
    its callback is no longer SUBMITTING and is left as it is; if the worker is killed before the
    write, its orders stay SUBMITTING and reconciliation queries them, as it does for any order
    whose answer was lost.
    """

    WRITE_SECONDS = 2.0
    outcome = Outcome.ACCEPTED  # the answers kept, and the move they make
    status = OrderStatus.ACCEPTED
    from_statuses: Sequence[str] = (OrderStatus.SUBMITTING,)

    def __init__(self) -> None:
        self.changes: dict[int, dict] = {}
        self.since = 0.0

    def take(self, order: RechargeOrder, result: ProviderResult) -> bool:
        """Keep an answer to write with the others if it is a plain one of the kind kept; False for any other answer."""
        if result.outcome != self.outcome or result.card_secrets:
            return False
        if not self.changes:
            self.since = time.monotonic()
        self.changes[order.pk] = _status_changes(
            self.status, reason=result.message if self.status != OrderStatus.SUCCEEDED else "",
            **_answer_fields(result.upstream_reference, result.settlement_price),
        )
        return True

    def write_if_due(self) -> None:
        if self.changes and time.monotonic() - self.since >= self.WRITE_SECONDS:
            self.write()

    def write(self) -> None:
        if self.changes:
            _update_each_if_status(self.changes, list(self.from_statuses))
        self.changes = {}


class _QuerySuccesses(_Acceptances):
    """A query job's plain successes (no cards), moved ACCEPTED or UNKNOWN -> SUCCEEDED together, as acceptances are.

    A success moves no money either (the held price is kept); an order settled meanwhile, by its
    callback, is no longer pending and is left as it is.
    """

    outcome = Outcome.SUCCEEDED
    status = OrderStatus.SUCCEEDED
    from_statuses = (OrderStatus.ACCEPTED, OrderStatus.UNKNOWN)


def _queue_again(order_ids: list[int]) -> None:
    """SUBMITTING -> QUEUED for orders a job claimed but had no time left to send, with a job of their own."""
    from orders.tasks import submit_orders

    with transaction.atomic():
        _move_without_money({"pk__in": order_ids}, OrderStatus.QUEUED, from_statuses=[OrderStatus.SUBMITTING],
                            reason=_("Not sent in its first job's time: queued again."))
        submit_orders.defer(order_ids=order_ids)


def vip_charge_request(order: RechargeOrder) -> VipCharge:
    """The redemption platform's direct charge for an order; raises InvalidRequest naming the field."""
    return VipCharge(
        product_code=order.product.code, mobile=order.mobile, account=order.target_account,
        biz_code=order.client_reference,
    )


def ecoupon_request(order: RechargeOrder, *, receive_url: str) -> EcouponPurchase:
    """17bst's card purchase for an order; raises InvalidRequest naming the field."""
    return EcouponPurchase(
        product_code=order.product.code, req_stream_id=order.client_reference, quantity=order.quantity,
        receive_url=receive_url,
    )


def batch_item_request(order: RechargeOrder) -> BatchItem:
    """The line of a batch charge for an order of the batch; raises InvalidRequest naming the field."""
    return BatchItem(
        biz_code=order.client_reference, account=order.target_account, attach_values=order.attach_values,
        spec=order.face_value,
    )


def _submit_one(order: RechargeOrder, client, accepted: _Acceptances) -> str:
    # The request is built inside the try, as an ERP sync's is: a field the upstream would refuse
    # (InvalidRequest, nothing sent) fails this one order and releases its hold, like any refusal.
    try:
        if order.provider == Provider.EXCHANGE:
            result = client.vip_charge(vip_charge_request(order), record=order)
        else:
            result = client.ecoupon(ecoupon_request(order, receive_url=client.config.callback_url), record=order)
    except ProviderError as err:
        if isinstance(err, ProviderNotReached):
            raise
        return _apply_error([order.pk], err)
    if accepted.take(order, result):
        return OrderStatus.ACCEPTED
    return _apply_result(order.pk, result, from_statuses=[OrderStatus.SUBMITTING])


def batch_submit_chunk(*, batch_id: int, chunk_number: int, order_ids: Sequence[int]) -> int:
    """Send one chunk of a batch through order/batch. Items already claimed elsewhere are left out."""
    claimed = _claim(order_ids)
    if not claimed:
        return 0
    batch = OrderBatch.objects.select_related("product").get(pk=batch_id)
    orders = list(RechargeOrder.objects.filter(pk__in=claimed).order_by("pk"))
    # An item the platform would refuse (InvalidRequest, nothing sent) fails on its own, as a
    # single order would; the others of the chunk go without it.
    items, sendable = [], []
    for order in orders:
        try:
            items.append(batch_item_request(order))
        except InvalidRequest as err:
            _apply_error([order.pk], err)
        else:
            sendable.append(order)
    if not sendable:
        return len(orders)
    client = ExchangeClient(merchant_account=batch.product.merchant_account)
    try:
        result = client.batch_charge(
            BatchCharge(
                # One batchBizCode per chunk: a chunk is claimed once, so it is sent once.
                batch_biz_code=f"{batch.batch_code}C{chunk_number:04d}",
                product_code=batch.product.code,
                items=items,
            ),
            record=batch,
        )
    except ProviderError as err:
        _apply_error([o.pk for o in sendable], err)
        return len(orders)
    by_reference = {item.client_reference: item for item in result.items}
    accepted = _Acceptances()
    try:
        for order in sendable:
            item = by_reference.get(order.client_reference)
            if item is None:  # the answer did not mention it: its fate is not known
                _apply(order.pk, OrderStatus.UNKNOWN, from_statuses=[OrderStatus.SUBMITTING],
                       reason=_("Missing from the batch answer."))
            elif not accepted.take(order, item):
                _apply_result(order.pk, item, from_statuses=[OrderStatus.SUBMITTING])
    finally:
        accepted.write()
    return len(orders)


# --- reconciling ----------------------------------------------------------------------------------


def orders_recover_stale_submissions(*, now: datetime.datetime | None = None) -> int:
    """Orders left SUBMITTING by a worker that died: they may have been sent, so they become UNKNOWN."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.ORDER_SUBMIT_STALE_SECONDS)
    stale = RechargeOrder.objects.filter(status=OrderStatus.SUBMITTING, submitted_at__lt=cutoff)
    recovered = 0
    for order_id in stale.values_list("pk", flat=True)[:1000]:
        recovered += _apply(
            order_id, OrderStatus.UNKNOWN, from_statuses=[OrderStatus.SUBMITTING],
            reason=_("The worker stopped while sending; the outcome will be queried."),
        )
    return recovered


# Orders still to be settled by a query (or a callback).
PENDING_QUERY = [OrderStatus.ACCEPTED, OrderStatus.UNKNOWN]

# Orders are queried in groups of ORDER_QUERY_GROUP_SIZE consecutive ids, by one job per group
# (orders.query_orders), whose queueing lock and lock are QUERY_LOCK_PREFIX + the group's first id:
# one job waiting per group and one running, whoever defers it (reconciliation, a callback).
QUERY_LOCK_PREFIX = "orders.query_orders:"


def _query_group_of(order_id: int) -> tuple[int, int]:
    """The first and last order id of the query group of an order."""
    first = order_id - order_id % settings.ORDER_QUERY_GROUP_SIZE
    return first, first + settings.ORDER_QUERY_GROUP_SIZE - 1


def order_query_lock(first_order_id: int) -> str:
    return f"{QUERY_LOCK_PREFIX}{first_order_id}"


def orders_due_for_query(*, now: datetime.datetime | None = None, limit: int = 500) -> list[int]:
    """ACCEPTED or UNKNOWN orders whose next query is due and whose group has no query job waiting.

    An order whose group's job is waiting is left out (the job's queueing lock, looked up in
    procrastinate's index of waiting locks): that job will query it, as it queries whatever of its
    group is due when it runs. So a reconciliation that finds more than `limit` orders pages
    through them by deferring each page's jobs and asking again.
    """
    from procrastinate.contrib.django.models import ProcrastinateJob

    now = now or timezone.now()
    size = settings.ORDER_QUERY_GROUP_SIZE
    job_waiting = ProcrastinateJob.objects.filter(
        status="todo", queueing_lock=Concat(Value(QUERY_LOCK_PREFIX), Cast(OuterRef("pk") / size * size, CharField())),
    )
    return list(
        RechargeOrder.objects.filter(status__in=PENDING_QUERY, next_query_at__lte=now)
        .exclude(Exists(job_waiting)).order_by("next_query_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def orders_query_defer(*, order_ids: Sequence[int]) -> int:
    """Defer the query job of the group of each of these orders, unless one is waiting; how many were deferred.

    Each job carries its group's queueing lock (at most one job waiting per group) and the same
    string as its lock (procrastinate starts no job while another with its lock runs), so no order
    is queried by two jobs at once. All are deferred in one statement; if another caller took one
    of the locks meanwhile, procrastinate refuses the whole statement, and they are deferred one
    by one instead, each refusal meaning that group's job is already waiting.
    """
    from procrastinate.contrib.django import app
    from procrastinate.exceptions import AlreadyEnqueued

    from orders.tasks import query_orders

    def job(group: tuple[int, int]):
        lock = order_query_lock(group[0])
        return query_orders.configure(queueing_lock=lock, lock=lock).make_new_job(
            first_order_id=group[0], last_order_id=group[1])

    groups = sorted({_query_group_of(order_id) for order_id in order_ids})
    if not groups:
        return 0
    try:
        with transaction.atomic():  # a savepoint: the refused statement must not spoil the caller's transaction
            app.job_manager.batch_defer_jobs(jobs=[job(group) for group in groups])
        return len(groups)
    except AlreadyEnqueued:
        pass
    deferred = 0
    for group in groups:
        try:
            with transaction.atomic():
                app.job_manager.defer_job(job=job(group))
            deferred += 1
        except AlreadyEnqueued:
            pass
    return deferred


def orders_query_group(*, first_order_id: int, last_order_id: int) -> dict[int, str]:
    """Query every order of one group that is due (the group's job); each claimed order's status afterwards.

    The group is claimed in one transaction (`_claim_for_query`), then each order is still its own
    query, asked and applied as `order_query` does; the calls are made ORDER_QUERY_THREADS at a
    time (`_ask_together`), and each answer is applied here, one after the other, as it arrives. An
    order whose answer cannot be applied leaves the others of its group to be settled: the job then
    fails, naming it, and the order (claimed, its next query moved on) is asked again at its next query.

    The claim lasts until the orders' next query is due (ORDER_QUERY_INTERVAL_SECONDS); nothing is
    sent once what is left of it is less than a call may take (`_query_sending_seconds`), so no call
    of this job is still under way when another job may claim the same order. The orders left
    unsent get their attempt back and are due at once.
    """
    now = timezone.now()
    send_by = time.monotonic() + _query_sending_seconds()
    to_ask, statuses = _claim_for_query(
        {"pk__range": (first_order_id, last_order_id), "status__in": PENDING_QUERY, "next_query_at__lte": now},
        now=now, only_if_due=True,
    )
    succeeded = _QuerySuccesses()
    failures: list[Exception] = []
    unsent: list[int] = []

    def settle(order: RechargeOrder, answered: Future) -> None:
        try:
            answer = answered.result()
            if answer is None:
                unsent.append(order.pk)
                statuses[order.pk] = order.status
            else:
                statuses[order.pk] = _apply_answer(order, answer, now, succeeded)
        except Exception as err:
            logger.exception("The answer to the query of order %s was not applied", order.pk)
            failures.append(err)
        succeeded.write_if_due()

    try:
        _ask_together(to_ask, settle, send_by=send_by)
    finally:
        succeeded.write()
        if unsent:
            # Only while the claim is still this job's (its next query as the claim set it).
            RechargeOrder.objects.filter(
                pk__in=unsent, status__in=PENDING_QUERY,
                next_query_at=now + datetime.timedelta(seconds=settings.ORDER_QUERY_INTERVAL_SECONDS),
            ).update(query_attempts=F("query_attempts") - 1, next_query_at=now)
    if failures:
        raise ExceptionGroup(f"{len(failures)} of {len(to_ask)} queried orders not settled", failures)
    return statuses


def _query_sending_seconds() -> float:
    """How long after claiming its orders a query job may still send: its claim, less the longest a call can take.

    A call may wait for the connection three times (two retries, providers.base) and then for the
    answer; at most half the claim, as a submission job sends for half its time (`orders_submit`).
    An interval shorter than a call can take leaves half of it: then a call can outlive the claim.
    """
    interval = settings.ORDER_QUERY_INTERVAL_SECONDS
    longest_call = 3 * settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT
    return min(interval / 2, interval - longest_call) if interval > longest_call else interval / 2


def _ask_together(
    orders: Sequence[RechargeOrder], settle: Callable[[RechargeOrder, Future], None], *, send_by: float
) -> None:
    """Ask the upstreams about these orders from ORDER_QUERY_THREADS threads, and settle each answer here as it arrives.

    A future's result is the answer (a ProviderResult, or the ProviderError the call ended in), or
    None for an order not sent because `send_by` (time.monotonic()) had passed.

    The threads only sign, send and read: they touch no database, so they open no connection and
    leave none behind. Each order goes to one thread, once (and the claim keeps every other job
    from asking about it meanwhile). Their calls' rows are handed back and written here, those
    answered together in one commit, before any of those answers is settled: no answer is applied
    without its call on record. If this stops early, the orders not yet sent are not sent, and the
    calls of those already sent are still written.
    """
    if not orders:
        return
    answered_calls: list[ProviderCall] = []
    calls_lock = threading.Lock()
    per_thread = threading.local()

    def keep(call: ProviderCall) -> None:
        with calls_lock:
            answered_calls.append(call)

    def write_calls() -> None:
        with calls_lock:
            calls = answered_calls[:]
            answered_calls.clear()
        ProviderCall.insert_all(calls)

    def ask(order: RechargeOrder) -> ProviderResult | ProviderError | None:
        if time.monotonic() > send_by:
            return None
        clients = per_thread.__dict__.setdefault("clients", {})  # a thread's own sessions
        client = clients.get((order.provider, order.merchant_account))
        if client is None:
            client = clients[(order.provider, order.merchant_account)] = _client(order, call_log=keep)
        try:
            return _ask(order, client)
        except ProviderError as err:
            return err

    try:
        with ThreadPoolExecutor(min(settings.ORDER_QUERY_THREADS, len(orders)), "order-query") as pool:
            pending = {pool.submit(ask, order): order for order in orders}
            try:
                while pending:
                    done, _running = wait(pending, return_when=FIRST_COMPLETED)
                    write_calls()
                    for answered in sorted(done, key=lambda future: pending[future].pk):
                        settle(pending.pop(answered), answered)
            finally:
                for future in pending:
                    future.cancel()
    finally:
        write_calls()


def orders_reconcile_defer(*, now: datetime.datetime | None = None, page: int = 1000) -> int:
    """Defer a query job for every group with orders due for a query and no job waiting; how many were deferred.

    Only finds and defers: the queries themselves are the jobs', run by every worker. Each page is
    committed as it is deferred (unless the caller holds a transaction), so workers start on the
    first page while the next is being found.
    """
    deferred = 0
    while due := orders_due_for_query(now=now, limit=page):
        deferred_now = orders_query_defer(order_ids=due)
        deferred += deferred_now
        # A short page was the last; a page of orders whose jobs were all deferred elsewhere in
        # the meantime (a concurrent run) means that run is paging through them too.
        if len(due) < page or not deferred_now:
            break
    return deferred


def _query_deadline_passed(order: RechargeOrder, now: datetime.datetime) -> bool:
    started = order.submitted_at or order.queued_at or order.created_at
    return (
        order.query_attempts >= settings.ORDER_QUERY_MAX_ATTEMPTS
        or now - started > datetime.timedelta(hours=settings.ORDER_QUERY_MAX_HOURS)
    )


def order_query(*, order_id: int, now: datetime.datetime | None = None, only_if_due: bool = False) -> str:
    """Ask the upstream about an ACCEPTED or UNKNOWN order; after N tries or T hours, a person decides.

    The order is claimed first (`_claim_for_query`), with `only_if_due` (as a query job asks) only
    if its next query is due; then the upstream is asked, with no lock held, and its answer applied.
    """
    now = now or timezone.now()
    to_ask, statuses = _claim_for_query({"pk": order_id}, now=now, only_if_due=only_if_due)
    if not to_ask:
        if order_id not in statuses:
            raise RechargeOrder.DoesNotExist(order_id)
        return statuses[order_id]
    return _ask_and_apply(to_ask[0], _client(to_ask[0]), now)


def _claim_for_query(
    lookup: dict, *, now: datetime.datetime, only_if_due: bool
) -> tuple[list[RechargeOrder], dict[int, str]]:
    """Claim the orders matching `lookup` that are to be asked about: (those orders, the others' statuses).

    Under the orders' row locks, in one transaction: an order still pending (and, with
    `only_if_due`, still due) has its attempt counted and its next query moved on, or goes to a
    person once its queries are used up; then the locks are released, before any upstream is
    called. A second job for the same orders, run at the same time or later, waits for the locks
    and then finds them not due: it asks nothing.
    """
    to_ask: list[RechargeOrder] = []
    statuses: dict[int, str] = {}
    with transaction.atomic():
        for order in _locked_orders().select_related("product").filter(**lookup).order_by("pk"):
            if order.status not in PENDING_QUERY or (
                only_if_due and (order.next_query_at is None or order.next_query_at > now)
            ):
                statuses[order.pk] = order.status
            elif _query_deadline_passed(order, now):
                _apply_locked(order, OrderStatus.MANUAL_REVIEW, from_statuses=PENDING_QUERY,
                              reason=_("Still not final after %(count)d queries: a person must decide.")
                              % {"count": order.query_attempts})
                statuses[order.pk] = OrderStatus.MANUAL_REVIEW
            else:
                to_ask.append(order)
        if to_ask:
            RechargeOrder.objects.filter(pk__in=[order.pk for order in to_ask]).update(
                query_attempts=F("query_attempts") + 1,
                next_query_at=now + datetime.timedelta(seconds=settings.ORDER_QUERY_INTERVAL_SECONDS),
            )
    return to_ask, statuses


def _ask(order: RechargeOrder, client) -> ProviderResult:
    """One query of a claimed order's upstream about it; raises what the call raises."""
    if order.provider == Provider.EXCHANGE:
        return client.order_info(OrderInfoQuery(biz_code=order.client_reference), record=order)
    return client.get_card_info(CardInfoQuery(req_stream_id=order.client_reference), record=order)


def _ask_and_apply(order: RechargeOrder, client, now: datetime.datetime) -> str:
    """Ask the upstream about a claimed order and apply its answer (`_apply_answer`); the order's status afterwards."""
    try:
        answer = _ask(order, client)
    except ProviderError as err:
        return _apply_answer(order, err, now)
    return _apply_answer(order, answer, now)


def _apply_answer(
    order: RechargeOrder, answer: ProviderResult | ProviderError, now: datetime.datetime, kept: _Acceptances | None = None
) -> str:
    """Apply the answer to a claimed order's query (or the error it ended in); the order's status afterwards.

    An answer is applied only to an order still pending (`_apply_result`, or with the job's other
    plain successes when `kept` takes it), so an order settled meanwhile by its callback is left
    as it is; anything but a final answer leaves the order, and its held price, as they are until
    the next query.
    """
    if isinstance(answer, Bst17QueryTooFrequent):
        backoff = settings.ORDER_QUERY_THROTTLE_SECONDS * (2 ** min(order.query_attempts, 5))
        RechargeOrder.objects.filter(pk=order.pk).update(
            query_attempts=order.query_attempts,  # throttling is not the order's fault: not counted
            next_query_at=now + datetime.timedelta(seconds=backoff),
        )
        return order.status
    if isinstance(answer, ProviderError):
        logger.warning("Query of order %s failed: %s", order.pk, answer)
        return order.status
    result = answer
    if kept is not None and kept.take(order, result):
        return kept.status
    if result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
        return _apply_result(order.pk, result, from_statuses=PENDING_QUERY)
    if result.outcome == Outcome.ACCEPTED and order.status == OrderStatus.UNKNOWN:
        _apply(order.pk, OrderStatus.ACCEPTED, from_statuses=[OrderStatus.UNKNOWN], reason=result.message)
    return RechargeOrder.objects.values_list("status", flat=True).get(pk=order.pk)


# --- callbacks and decisions ----------------------------------------------------------------------


def callback_nonce_accept(*, provider: str, nonce: str) -> bool:
    """Remember a callback's nonce; False if it was seen before (a replay).

    One statement: the unique constraint refuses the replay and ON CONFLICT DO NOTHING turns that
    into a row count of 0, so no savepoint is needed around it. Inside the caller's transaction,
    so the nonce is taken exactly when the callback's changes are committed.
    """
    connection = connections[router.db_for_write(CallbackNonce)]
    with connection.cursor() as cursor:
        cursor.execute(_nonce_insert(connection), [provider, nonce, timezone.now()])
        return cursor.rowcount == 1


def _nonce_insert(connection) -> str:
    """The INSERT of a (provider, nonce, received_at) that inserts nothing if the nonce was seen."""
    table = connection.ops.quote_name(CallbackNonce._meta.db_table)  # the model's own table name, not input
    return (
        f"INSERT INTO {table} (provider, nonce, received_at) VALUES (%s, %s, %s) "  # noqa: S608
        "ON CONFLICT ON CONSTRAINT callback_nonce_once DO NOTHING"
    )


CALLBACK_FROM_STATUSES = [
    OrderStatus.SUBMITTING, OrderStatus.ACCEPTED, OrderStatus.UNKNOWN, OrderStatus.MANUAL_REVIEW,
]


class CallbackEffect(enum.Enum):
    CHANGED = "changed"  # this delivery moved the order
    ALREADY_APPLIED = "already applied"  # an earlier delivery (or a query) had: nothing to do
    REPLAYED = "replayed"  # its nonce was seen before: refused, nothing done


def exchange_callback_apply(*, callback: ExchangeCallback, nonce: str) -> CallbackEffect:
    """Apply a verified status callback once per nonce; only the first delivery can change the order.

    Only an order of the merchant account whose keys verified the callback: another account's
    order is "no order" to it.
    """
    status = OUTCOME_STATUS.get(callback.status)
    order = {"provider": Provider.EXCHANGE, "merchant_account": callback.merchant_account,
             "client_reference": callback.biz_code}
    if status == OrderStatus.SUCCEEDED:
        # The common case moves no money: the nonce and the order in one statement.
        fresh, moved = _update_if_status_and_nonce_fresh(
            (Provider.EXCHANGE, nonce), order, _statuses_moving_to(status, CALLBACK_FROM_STATUSES),
            _status_changes(status, reason=callback.message,
                            **_answer_fields(callback.order_code, callback.settlement_price)),
        )
        if not fresh:
            return CallbackEffect.REPLAYED
        if moved:
            return CallbackEffect.CHANGED
        if not RechargeOrder.objects.filter(**order).exists():
            raise ValidationError(_("No order %(reference)s.") % {"reference": callback.biz_code})
        return CallbackEffect.ALREADY_APPLIED
    with transaction.atomic():
        if not callback_nonce_accept(provider=Provider.EXCHANGE, nonce=nonce):
            return CallbackEffect.REPLAYED
        locked = _locked_orders().filter(**order).first()
        if locked is None:
            raise ValidationError(_("No order %(reference)s.") % {"reference": callback.biz_code})
        if status == OrderStatus.FAILED and _apply_locked(
            locked, status, from_statuses=CALLBACK_FROM_STATUSES, reason=callback.message,
            upstream_order_no=callback.order_code, settlement_price=callback.settlement_price,
        ):
            return CallbackEffect.CHANGED
        return CallbackEffect.ALREADY_APPLIED


def bst17_callback_apply(*, req_stream_id: str, outcome: str, merchant_account: str) -> bool:
    """A 17bst callback says final; the cards are fetched by querying at once (the callback has none).

    Only an order of the merchant account whose key verified the callback.
    """
    order_id = RechargeOrder.objects.filter(
        provider=Provider.BST17, merchant_account=merchant_account, client_reference=req_stream_id
    ).values_list("pk", flat=True).first()
    if order_id is None:
        raise ValidationError(_("No order %(reference)s.") % {"reference": req_stream_id})
    if outcome == Outcome.FAILED:
        return _apply(order_id, OrderStatus.FAILED, from_statuses=CALLBACK_FROM_STATUSES,
                      reason=_("17bst reported the order failed."))
    with transaction.atomic():
        moved = RechargeOrder.objects.filter(
            pk=order_id, status__in=[OrderStatus.ACCEPTED, OrderStatus.UNKNOWN]
        ).update(next_query_at=timezone.now())
        if moved:
            orders_query_defer(order_ids=[order_id])  # none if one is waiting: it will find the order due
    return bool(moved)


def order_resolve(*, order_id: int, actor, succeeded: bool, note: str) -> bool:
    """A supervisor's decision on an order under manual review (audited through the history)."""
    note = note.strip()
    if not note:
        raise ValidationError({"note": _("Say what you checked before deciding.")})
    status = OrderStatus.SUCCEEDED if succeeded else OrderStatus.FAILED
    return _apply(order_id, status, from_statuses=[OrderStatus.MANUAL_REVIEW], reason=note, actor=actor)


# --- products and balance -------------------------------------------------------------------------


def products_sync_bst17(*, merchant_account: str = "default") -> tuple[int, int]:
    """Upsert 17bst's product list; a product that disappeared upstream is taken off sale."""
    products = Bst17Client(merchant_account=merchant_account).get_product_list()
    now = timezone.now()
    existing = {p.code: p for p in Product.objects.filter(provider=Provider.BST17)}
    created = updated = 0
    with transaction.atomic():
        for upstream in products:
            values = {
                "name": upstream.business_name or upstream.code, "kind": OrderKind.GIFT_CARD,
                "business_type": upstream.business_code, "face_value": upstream.face_value,
                "cost_price": upstream.price, "discount": upstream.discount, "province": upstream.province,
                "arrival_type": upstream.arrival, "merchant_account": merchant_account, "synced_at": now,
                "active": True,
            }
            product = existing.get(upstream.code)
            if product is None:
                Product.objects.create(provider=Provider.BST17, code=upstream.code,
                                       sale_price=upstream.face_value, **values)
                created += 1
            else:
                for name, value in values.items():
                    setattr(product, name, value)
                product.save()
                updated += 1
        seen = {p.code for p in products}
        Product.objects.filter(provider=Provider.BST17, active=True).exclude(code__in=seen).update(active=False)
    return created, updated


def upstream_balance_refresh(*, merchant_account: str = "default") -> UpstreamBalance:
    balance = Bst17Client(merchant_account=merchant_account).query_balance()
    snapshot, _created = UpstreamBalance.objects.update_or_create(
        provider=Provider.BST17, merchant_account=merchant_account,
        defaults={"credit": balance.credit, "frozen": balance.freeze, "commission": balance.profit},
    )
    return snapshot


# --- card PINs ------------------------------------------------------------------------------------


def card_secret_reveal(*, card_secret: CardSecret, actor) -> str:
    """Return the PIN in clear for one card, recording who saw it and when."""
    if not actor.has_perm("orders.reveal_cardsecret"):
        raise PermissionDenied(_("You may not reveal card PINs."))
    pin = decrypt_pin(card_secret.pin_ciphertext)
    PinDisclosure.objects.create(card_secret=card_secret, user=actor, channel=PinDisclosure.Channel.REVEAL)
    return pin


def card_secrets_export(*, card_secrets: Sequence[CardSecret], actor) -> list[tuple[CardSecret, str]]:
    """Decrypt PINs for an export, recording one disclosure per card in the same transaction."""
    if not actor.has_perm("orders.export_cardsecret"):
        raise PermissionDenied(_("You may not export card PINs."))
    with transaction.atomic():
        rows = [(card, decrypt_pin(card.pin_ciphertext)) for card in card_secrets]
        PinDisclosure.objects.bulk_create(
            [PinDisclosure(card_secret=card, user=actor, channel=PinDisclosure.Channel.EXPORT) for card in card_secrets]
        )
    return rows
