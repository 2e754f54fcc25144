"""17bst products and our 17bst balance, synced by a job or a button."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from orders.models import Product, UpstreamBalance
from orders.services import products_sync_bst17, upstream_balance_refresh
from tests.factories import sign_in, verify_second_factor

pytestmark = pytest.mark.django_db


def test_sync_creates_then_updates_and_takes_vanished_products_off_sale(sandbox):
    Product.objects.create(provider="bst17", code="999", name="旧产品", kind="gift_card", sale_price=Decimal("1"))

    assert products_sync_bst17() == (4, 0)
    assert products_sync_bst17() == (0, 4)

    card = Product.objects.get(provider="bst17", code="12")
    assert card.face_value == Decimal("100.00") and card.discount == Decimal("97.33")
    assert card.province == "广东" and card.kind == "gift_card" and card.active
    assert not Product.objects.get(code="999").active


def test_the_balance_is_read_and_shown_to_clerks(sandbox, client, supervisor):
    balance = upstream_balance_refresh()
    assert balance.credit == Decimal("10000.00")

    sign_in(client, supervisor)
    verify_second_factor(client, supervisor)
    page = client.get(reverse("admin:orders_product_changelist")).content.decode()
    assert "10000.00" in page


def test_the_sync_button_needs_its_permission(sandbox, client, clerk, supervisor):
    sign_in(client, clerk)
    assert client.post(reverse("admin:orders_product_sync")).status_code == 403
    assert not Product.objects.exists()

    sign_in(client, supervisor)
    verify_second_factor(client, supervisor)
    assert client.post(reverse("admin:orders_product_sync")).status_code == 302
    assert Product.objects.filter(provider="bst17").count() == 4
    assert UpstreamBalance.objects.get().credit == Decimal("10000.00")
