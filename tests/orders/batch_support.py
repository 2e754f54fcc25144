"""What can change between a batch file's check and its import, for the tests of both."""

from __future__ import annotations

from orders.services import BatchItemData, batch_create

TAKEN_CODE = "TAKEN1"


def deactivate_product(distributor, product, clerk):
    product.active = False
    product.save()


def suspend_distributor(distributor, product, clerk):
    distributor.status = "suspended"
    distributor.save()


def take_the_batch_code(distributor, product, clerk):
    batch_create(distributor=distributor, product=product, actor=clerk, batch_code=TAKEN_CODE,
                 items=[BatchItemData("13999999999")])
