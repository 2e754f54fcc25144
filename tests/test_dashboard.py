"""The admin index tells a clerk what needs attention, and each number matches the list it links to."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from config.roles import FINANCE_CLERK, FINANCE_SUPERVISOR
from distributors.fund_transactions import fund_transaction_approve, fund_transaction_create, fund_transactions_submit
from distributors.models import ErpSync, SyncStatus
from orders.models import OrderKind, OrderStatus, Product, RechargeOrder
from orders.services import order_create
from tests.factories import make_distributor, make_user, sign_in, verify_second_factor

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_day():
    clerk = make_user("clerk", FINANCE_CLERK)
    supervisor = make_user("supervisor", FINANCE_SUPERVISOR)
    distributor = make_distributor(kept_in_wdt=True, wdt_nick_no="FX1", wdt_nick_name="一号")
    for amount, approve in (("500.00", True), ("250.00", True), ("99.00", False)):
        ft = fund_transaction_create(actor=clerk, distributor=distributor, type="recharge", amount=Decimal(amount),
                                     receiving_account="6222", payment_channel="bank_transfer")
        fund_transactions_submit(ids=[ft.pk])
        if approve:
            fund_transaction_approve(fund_transaction_id=ft.pk, actor=supervisor)
    ErpSync.objects.filter(pk=ErpSync.objects.first().pk).update(status=SyncStatus.MANUAL_REVIEW)
    product = Product.objects.create(provider="bst17", code="12", name="卡", kind=OrderKind.GIFT_CARD,
                                     sale_price=Decimal("10.00"))
    for status in (OrderStatus.SUCCEEDED, OrderStatus.SUCCEEDED, OrderStatus.UNKNOWN, OrderStatus.MANUAL_REVIEW,
                   OrderStatus.FAILED):
        order = order_create(distributor=distributor, product=product, actor=clerk)
        RechargeOrder.objects.filter(pk=order.pk).update(status=status, finished_at=timezone.now())
    return supervisor


def test_every_dashboard_number_matches_the_list_it_links_to(client, busy_day):
    sign_in(client, busy_day)
    verify_second_factor(client, busy_day)

    index = client.get(reverse("admin:index"))

    dashboard = index.context["dashboard"]
    figures = [*dashboard["attention"]]
    for period in dashboard["periods"]:
        figures += [period["recharges"], period["orders_total"], *period["orders"]]
    checked = 0
    for figure in figures:
        listing = client.get(figure.url)
        assert listing.status_code == 200, figure.url
        assert listing.context["cl"].result_count == figure.count, (figure.label, figure.url)
        checked += 1
    assert checked >= 10
    today = dashboard["periods"][0]
    assert today["recharges"].count == 2 and today["recharges"].amount == Decimal("750.00")
    assert today["orders_total"].count == 5 and today["orders_total"].amount == Decimal("50.00")
    attention = {figure.label: figure.count for figure in dashboard["attention"]}
    assert list(attention.values()) == [1, 1, 0, 1, 1, 1]
    assert sum(bar["recharges"] for bar in dashboard["chart"]) == Decimal("750.00")


def test_the_dashboard_draws_its_chart_without_scripts(client, busy_day):
    sign_in(client, busy_day)
    verify_second_factor(client, busy_day)

    page = client.get(reverse("admin:index")).content.decode()

    assert 'id="chart-30-days"' in page and "<script>" not in page.split('id="dashboard"')[1].split("</svg>")[0]
