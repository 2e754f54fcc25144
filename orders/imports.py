"""Batch direct charges from a clerk's .xlsx or .csv file, through the one import pipeline (config.imports).

The file has one row per account to charge (columns in Chinese or English, see COLUMNS); the job's
options name the distributor, the product, the batch code and the remark chosen on the upload
page. The check (a background job, like every import's) prices every row against the product and
shows the batch before anything exists; the confirmed import checks again and creates the batch
and its draft items in one transaction. Placing the batch, which holds the money, is a separate step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from config.file_jobs import Progress
from config.imports import CheckedFile, ParsedFile, SpreadsheetImport
from config.models import FileJob, FileJobKind
from config.spreadsheet_import import Column, FileRefused, parse_amount, parse_text
from distributors.models import Distributor, DistributorStatus
from orders.models import OrderBatch, Product, RechargeOrder

COLUMNS: tuple[Column, ...] = (
    Column("target_account", "Account", "充值账号", required=True,
           aliases=("Account to charge", "账号", "充值帐号")),
    Column("attach_values", "Attach values", "附加参数",
           aliases=("Extra account values", "Attach value", "附加值", "附加账号信息")),
    Column("face_value", "Face value", "面值", aliases=("面额", "充值面值")),
)
TEMPLATE_HEADERS = {"zh": [c.chinese for c in COLUMNS], "en": [c.english for c in COLUMNS]}


@dataclass(slots=True)
class BatchRow:
    row: int
    target_account: str
    attach_values: str
    face_value: Decimal | None
    price: Decimal | None = None  # set by the check, from the product


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


class BatchImport(SpreadsheetImport):
    kind = FileJobKind.ORDER_BATCH_IMPORT
    columns = COLUMNS
    row_class = BatchRow
    permission = "orders.add_orderbatch"
    lock_key = 0x4F_42_49_4D  # "OBIM"

    @functools.cache  # noqa: B019  (one instance per job step: spreadsheet_import() makes a new one)
    def product(self, product_id: int) -> Product:
        return Product.objects.get(pk=product_id)

    def _product(self, job: FileJob) -> Product:
        return self.product(job.options["product_id"])

    def max_rows(self, job: FileJob) -> int:
        return settings.ORDER_BATCH_MAX_ITEMS

    def too_many_rows(self, limit: int) -> str:
        return _("A batch holds at most %(limit)d items; split the file.") % {"limit": limit}

    def before_reading(self, job: FileJob) -> None:
        if not self._product(job).active:
            raise FileRefused(_("This product is not on sale."))

    def converters(self, job: FileJob) -> dict[str, Callable[[Any], Any]]:
        def text(name: str):
            return functools.partial(parse_text, max_length=RechargeOrder._meta.get_field(name).max_length)

        return {"target_account": text("target_account"), "attach_values": text("attach_values"),
                "face_value": _face_value(self._product(job))}

    def required(self, job: FileJob) -> set[str]:
        return {"target_account", *(["face_value"] if self._product(job).needs_face_value else [])}

    def empty_value(self, field_name: str) -> Any:
        return "" if field_name == "attach_values" else None

    def check(self, job: FileJob, parsed: ParsedFile) -> CheckedFile:
        from orders.services import order_price

        product = self._product(job)
        distributor = Distributor.objects.filter(pk=job.options["distributor_id"]).first()
        if not product.active:
            raise FileRefused(_("This product is not on sale."))
        if distributor is None:
            raise FileRefused(_("The distributor of this batch is closed."))
        if distributor.status != DistributorStatus.ACTIVE:
            # Only an active distributor gets orders (order_check): a suspended one would pass the check
            # and fail the import.
            raise FileRefused(_("Distributor %(distributor)s is %(status)s: it gets no orders.")
                              % {"distributor": distributor.code, "status": distributor.get_status_display()})
        code = job.options.get("batch_code", "").strip()
        if code and OrderBatch.objects.filter(batch_code=code).exists():  # taken since the upload form checked it
            raise FileRefused(_("A batch with this code already exists."))
        errors, labels, rows = list(parsed.errors), parsed.labels, []
        first_seen: dict[tuple, int] = {}
        for row in parsed.rows:
            key = (row.target_account, row.attach_values, row.face_value)
            seen = first_seen.setdefault(key, row.row)
            if seen != row.row:
                errors.append({"row": row.row, "field": labels["target_account"], "message": _(
                    "This row repeats row %(row)d: the same account would be charged twice."
                ) % {"row": seen}})
                continue
            try:
                # Priced now, from the product as it is: the preview and the import agree with it.
                row.price = order_price(product=product, quantity=1, face_value=row.face_value)
            except ValidationError as err:
                errors.append({"row": row.row, "field": labels["face_value"], "message": " ".join(err.messages)})
                continue
            rows.append(row)
        total = sum((row.price for row in rows), Decimal("0.00"))
        return CheckedFile(total_rows=parsed.total_rows, new_rows=rows, skipped=0,
                           errors=self.sort_errors(errors, labels), summary={"total_price": str(total)})

    def save(self, job: FileJob, checked: CheckedFile, progress: Progress) -> dict[str, Any]:
        from orders.services import BatchItemData, batch_create

        batch = batch_create(
            distributor=Distributor.objects.get(pk=job.options["distributor_id"]), product=self._product(job),
            actor=job.created_by, batch_code=job.options.get("batch_code", ""), remark=job.options.get("remark", ""),
            items=[BatchItemData(row.target_account, row.attach_values, row.face_value) for row in checked.new_rows],
        )
        progress(len(checked.new_rows))
        return {"options": {**job.options, "batch_id": batch.pk}}


def batch_import_now(*, distributor: Distributor, product: Product, actor, filename: str, content: bytes,
                     batch_code: str = "", remark: str = "", language: str = "en") -> FileJob:
    """Upload, check and (when the check is clean) import a batch file in this process: for the shell and tests."""
    from config.imports import file_import_now

    return file_import_now(
        kind=FileJobKind.ORDER_BATCH_IMPORT, actor=actor, filename=filename, content=content, language=language,
        options={"distributor_id": distributor.pk, "product_id": product.pk, "batch_code": batch_code,
                 "remark": remark},
    )
