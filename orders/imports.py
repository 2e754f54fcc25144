"""Batch direct charges from a clerk's .xlsx or .csv file: check every row, then create all or none.

The file has one row per account to charge (columns in Chinese or English, see COLUMNS). Reading
and the generic checks (size, zip bombs, encodings, formulas, headers) are shared with the fund
transaction import (config.spreadsheet_import); what a row means is checked here, against the
batch's product. Nothing is written while checking: `batch_file_check` is the preview, and
`orders.services.batch_import` checks the file again and creates the batch and its items in one
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from config.spreadsheet_import import (
    Column,
    FileRefused,
    cell_value,
    format_for_filename,
    is_blank,
    map_header,
    read_rows,
)
from distributors.resources import parse_amount, parse_text
from orders.models import Product, RechargeOrder

COLUMNS: tuple[Column, ...] = (
    Column("target_account", "Account", "充值账号", required=True,
           aliases=("Account to charge", "账号", "充值帐号")),
    Column("attach_values", "Attach values", "附加参数",
           aliases=("Extra account values", "Attach value", "附加值", "附加账号信息")),
    Column("face_value", "Face value", "面值", aliases=("面额", "充值面值")),
)
TEMPLATE_HEADERS = {"zh": [c.chinese for c in COLUMNS], "en": [c.english for c in COLUMNS]}


@dataclass(frozen=True, slots=True)
class BatchRow:
    row: int
    target_account: str
    attach_values: str
    face_value: Decimal | None
    price: Decimal


@dataclass
class BatchFile:
    total_rows: int = 0
    rows: list[BatchRow] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    @property
    def total_price(self) -> Decimal:
        return sum((row.price for row in self.rows), Decimal("0.00"))


def _text(name: str):
    max_length = RechargeOrder._meta.get_field(name).max_length
    return lambda value: parse_text(value, max_length)


def _face_value(product: Product):
    def parse(value: Any) -> Decimal | None:
        amount = parse_amount(value)
        if not product.needs_face_value:
            # A fixed-price product: a face value copied from the product list is harmless; any
            # other one would be sent upstream and charged differently from what we hold.
            if product.face_value is not None and amount == product.face_value:
                return None
            raise ValidationError(_("This product has a fixed price; leave the face value empty."))
        return amount

    return parse


def batch_file_check(*, content: bytes, filename: str, product: Product) -> BatchFile:
    """Read and check every row for a batch of `product`. Raises FileRefused for whole-file problems."""
    from orders.services import order_price

    if not product.active:
        raise FileRefused(_("This product is not on sale."))
    rows = read_rows(content, format_for_filename(filename))
    try:
        first = next(rows, None)
        if first is None or first[0] != 1 or is_blank(first[1]):
            raise FileRefused(_("The file is empty, or its first row (the column headers) is empty."))
        header = list(first[1])
        while header and header[-1] in (None, ""):
            header.pop()
        positions, labels = map_header(header, COLUMNS)
        converters = {
            "target_account": _text("target_account"),
            "attach_values": _text("attach_values"),
            "face_value": _face_value(product),
        }
        required = {"target_account", *(["face_value"] if product.needs_face_value else [])}
        result = BatchFile()
        first_seen: dict[tuple, int] = {}
        for number, values in rows:  # the row numbers the spreadsheet shows
            if is_blank(values):
                continue
            result.total_rows += 1
            if result.total_rows > settings.ORDER_BATCH_MAX_ITEMS:
                raise FileRefused(
                    _("A batch holds at most %(limit)d items; split the file.") % {"limit": settings.ORDER_BATCH_MAX_ITEMS}
                )
            parsed: dict[str, Any] = {}
            failed = False
            for column in COLUMNS:
                position = positions.get(column.field)
                raw = values[position] if position is not None and position < len(values) else None
                try:
                    value = cell_value(raw, required=column.field in required)
                    parsed[column.field] = converters[column.field](value) if value is not None else None
                except ValidationError as err:
                    failed = True
                    result.errors.append({"row": number, "field": labels[column.field], "message": " ".join(err.messages)})
            if failed:
                continue
            key = (parsed["target_account"], parsed["attach_values"] or "", parsed["face_value"])
            seen = first_seen.setdefault(key, number)
            if seen != number:
                result.errors.append({"row": number, "field": labels["target_account"], "message": _(
                    "This row repeats row %(row)d: the same account would be charged twice."
                ) % {"row": seen}})
                continue
            try:
                price = order_price(product=product, quantity=1, face_value=parsed["face_value"])
            except ValidationError as err:
                result.errors.append({"row": number, "field": labels["face_value"], "message": " ".join(err.messages)})
                continue
            result.rows.append(BatchRow(row=number, target_account=parsed["target_account"],
                                        attach_values=parsed["attach_values"] or "",
                                        face_value=parsed["face_value"], price=price))
    finally:
        rows.close()
    if result.total_rows == 0:
        raise FileRefused(_("The file has column headers but no rows to import."))
    return result
