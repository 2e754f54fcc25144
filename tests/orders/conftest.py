from __future__ import annotations

from decimal import Decimal

import pytest

from orders.models import OrderKind, Product
from providers.models import Provider
from tests.factories import fund, make_distributor


@pytest.fixture
def distributor():
    distributor = make_distributor(code="OD1001", name="下单分销商")
    fund(distributor, "1000.00")
    return distributor


@pytest.fixture
def gift_card_product():
    return Product.objects.create(
        provider=Provider.BST17, code="12", name="话费充值卡 100", kind=OrderKind.GIFT_CARD,
        face_value=Decimal("100.00"), cost_price=Decimal("97.33"), sale_price=Decimal("98.50"),
    )


@pytest.fixture
def direct_charge_product():
    return Product.objects.create(
        provider=Provider.EXCHANGE, code="87103", name="视频会员月卡", kind=OrderKind.DIRECT_CHARGE,
        face_value=Decimal("25.00"), cost_price=Decimal("20.00"), sale_price=Decimal("22.00"),
    )
