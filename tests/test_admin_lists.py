"""The big admin lists (orders, fund transactions, provider calls, the audit log) stay fast.

On a million rows a list must not count the whole table, must not run a query per row, and
must still find what the clerk filters or searches for. The timings themselves are measured by
bench/admin_lists.py; these tests pin the behaviour that makes them possible.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pghistory
import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from config.admin_paging import LargeTablePaginator
from distributors.models import FundTransaction, FundTransactionStatus, FundTransactionType
from orders.models import OrderKind, OrderStatus, Product, RechargeOrder
from providers.models import Provider, ProviderCall
from providers.results import Outcome
from tests.factories import make_distributor, sign_in, verify_second_factor

pytestmark = pytest.mark.django_db

LISTS = {
    "orders": "admin:orders_rechargeorder_changelist",
    "fund transactions": "admin:distributors_fundtransaction_changelist",
    "provider calls": "admin:providers_providercall_changelist",
    "audit log": "admin:pghistory_events_changelist",
}
TABLES = {
    "orders": RechargeOrder._meta.db_table,
    "fund transactions": FundTransaction._meta.db_table,
    "provider calls": ProviderCall._meta.db_table,
    "audit log": RechargeOrder.pgh_event_models["insert"]._meta.db_table,
}


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", password="a-long-test-password")
    sign_in(client, user)
    verify_second_factor(client, user)
    client.user = user
    return client


@pytest.fixture
def product():
    return Product.objects.create(provider=Provider.BST17, code="12", name="话费充值卡 100",
                                  kind=OrderKind.GIFT_CARD, sale_price=Decimal("98.50"))


def add_rows(count: int, product, user, *, start: int = 0) -> None:
    """`count` orders, fund transactions and provider calls, each row with a distributor of its own."""
    with pghistory.context(user=user.pk, source="import"):
        for n in range(start, start + count):
            distributor = make_distributor(code=f"D{n:04d}")
            RechargeOrder.objects.create(
                distributor=distributor, product=product, provider=product.provider, kind=product.kind,
                client_reference=f"20260101{n:012X}", target_account=f"1380000{n:04d}", price_charged=Decimal("98.50"),
                status=OrderStatus.SUCCEEDED if n % 2 else OrderStatus.FAILED, created_by=user,
            )
            FundTransaction.objects.create(
                distributor=distributor, type=FundTransactionType.RECHARGE, amount=Decimal("100.00"),
                voucher_no=f"V{n:06d}", created_by=user,
                status=FundTransactionStatus.APPROVED if n % 2 else FundTransactionStatus.DRAFT,
            )
            ProviderCall.objects.create(
                provider="bst17" if n % 2 else "exchange", operation="ecoupon" if n % 2 else "VIPCharge",
                client_reference=f"R{n:011d}", url="https://upstream.example/api", record_id=str(n),
                outcome=Outcome.SUCCEEDED if n % 2 else Outcome.UNKNOWN,
            )


def list_queries(client, name: str, **params) -> list[str]:
    with CaptureQueriesContext(connections["default"]) as main, CaptureQueriesContext(connections["call_log"]) as log:
        response = client.get(reverse(LISTS[name]), params)
    assert response.status_code == 200, response
    return [query["sql"] for query in [*main.captured_queries, *log.captured_queries]]


def shown(client, name: str, **params) -> list:
    response = client.get(reverse(LISTS[name]), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


# --- no count over a whole table ----------------------------------------------------------------


@pytest.mark.parametrize("name", LISTS)
def test_an_unfiltered_list_never_counts_the_whole_table(admin_client, product, name, monkeypatch):
    add_rows(3, product, admin_client.user)
    # As on a big table: the list is past the size where an exact count is still taken.
    monkeypatch.setattr(LargeTablePaginator, "exact_count_limit", 2)
    with connections["default"].cursor() as cursor:
        cursor.execute(f'ANALYZE "{TABLES[name]}"')

    queries = list_queries(admin_client, name)

    counts = [sql for sql in queries if "COUNT(" in sql.upper()]
    assert counts, "the list counts its rows somehow"
    for sql in counts:
        # Every count reads a LIMITed subquery: at most exact_count_limit + 1 rows.
        assert re.search(r"LIMIT\s+3\b", sql), sql
    assert any("reltuples" in sql for sql in queries)


@pytest.mark.parametrize("name", LISTS)
def test_a_filtered_list_counts_at_most_the_limit(admin_client, product, name):
    add_rows(2, product, admin_client.user)
    params = {
        "orders": {"status__exact": OrderStatus.SUCCEEDED},
        "fund transactions": {"status__exact": FundTransactionStatus.APPROVED},
        "provider calls": {"outcome__exact": Outcome.SUCCEEDED},
        "audit log": {"pgh_label": "insert"},
    }[name]

    queries = list_queries(admin_client, name, **params)

    for sql in (sql for sql in queries if "COUNT(" in sql.upper()):
        assert f"LIMIT {LargeTablePaginator.exact_count_limit + 1}" in sql, sql


# --- a constant number of queries ---------------------------------------------------------------


@pytest.mark.parametrize("name", LISTS)
@pytest.mark.parametrize("params", [{}, {"q": "D0001"}, {"p": "2"}], ids=["plain", "searched", "page 2"])
def test_the_number_of_queries_does_not_grow_with_the_rows_shown(admin_client, product, name, params, monkeypatch):
    monkeypatch.setattr("django.contrib.admin.ModelAdmin.list_per_page", 2)
    add_rows(3, product, admin_client.user)
    few = len(list_queries(admin_client, name, **params))

    add_rows(12, product, admin_client.user, start=3)
    many = len(list_queries(admin_client, name, **params))

    # Bigger pages: the same queries, whatever the page size.
    monkeypatch.setattr("django.contrib.admin.ModelAdmin.list_per_page", 5)
    bigger_pages = len(list_queries(admin_client, name, **params))

    assert few == many == bigger_pages


# --- filters and searches still find the right rows ----------------------------------------------


def test_orders_are_found_by_number_prefix_account_or_distributor_code_and_filtered_by_status(admin_client, product):
    add_rows(4, product, admin_client.user)

    by_number = shown(admin_client, "orders", q="20260101000000000002")
    by_prefix = shown(admin_client, "orders", q="2026010100000000000")
    by_account = shown(admin_client, "orders", q="13800000003")
    by_distributor = shown(admin_client, "orders", q="d0001")  # a code, in any case
    failed = shown(admin_client, "orders", status__exact=OrderStatus.FAILED)

    assert [o.client_reference for o in by_number] == ["20260101000000000002"]
    assert len(by_prefix) == 4
    assert [o.target_account for o in by_account] == ["13800000003"]
    assert [o.distributor.code for o in by_distributor] == ["D0001"]
    assert sorted(o.client_reference for o in failed) == ["20260101000000000000", "20260101000000000002"]
    assert [o.pk for o in shown(admin_client, "orders")] == sorted((o.pk for o in by_prefix), reverse=True)


def test_fund_transactions_are_found_by_voucher_or_distributor_and_filtered_by_status(admin_client, product):
    add_rows(4, product, admin_client.user)

    by_voucher = shown(admin_client, "fund transactions", q="V000002")
    by_distributor = shown(admin_client, "fund transactions", q="D0003")
    drafts = shown(admin_client, "fund transactions", status__exact=FundTransactionStatus.DRAFT)

    assert [t.voucher_no for t in by_voucher] == ["V000002"]
    assert [t.voucher_no for t in by_distributor] == ["V000003"]
    assert sorted(t.voucher_no for t in drafts) == ["V000000", "V000002"]


def test_provider_calls_are_filtered_by_operation_from_the_index_and_found_by_reference(admin_client, product):
    add_rows(4, product, admin_client.user)

    response = admin_client.get(reverse(LISTS["provider calls"]))
    operations = next(
        spec for spec in response.context["cl"].filter_specs if getattr(spec, "parameter_name", None) == "operation"
    )
    ecoupon = shown(admin_client, "provider calls", operation="bst17:ecoupon")
    by_reference = shown(admin_client, "provider calls", q="R00000000002")
    by_record = shown(admin_client, "provider calls", q="3")
    unknown = shown(admin_client, "provider calls", outcome__exact=Outcome.UNKNOWN)

    assert [value for value, _label in operations.lookup_choices] == ["bst17:ecoupon", "exchange:VIPCharge"]
    assert sorted(c.client_reference for c in ecoupon) == ["R00000000001", "R00000000003"]
    assert [c.client_reference for c in by_reference] == ["R00000000002"]
    assert [c.record_id for c in by_record] == ["3"]
    assert sorted(c.client_reference for c in unknown) == ["R00000000000", "R00000000002"]


def test_the_audit_log_pages_newest_first_with_diffs_users_and_per_object_history(admin_client, product):
    add_rows(3, product, admin_client.user)
    order = RechargeOrder.objects.order_by("id").first()
    someone = get_user_model().objects.create_user("history-clerk", password="a-long-test-password")
    with pghistory.context(user=someone.pk, source="web"):
        RechargeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.MANUAL_REVIEW)

    newest = shown(admin_client, "audit log")
    updates = shown(admin_client, "audit log", pgh_label="update", source="web")
    history = shown(admin_client, "audit log", method="tracks", obj=f"orders.rechargeorder:{order.pk}")
    response = admin_client.get(reverse(LISTS["audit log"]), {"pgh_label": "update"})

    assert ("orders.RechargeOrder", "update") in [(e.pgh_obj_model, e.pgh_label) for e in newest]
    stamps = [(e.pgh_created_at, e.pgh_id) for e in newest]
    assert stamps == sorted(stamps, reverse=True)
    assert [(e.pgh_obj_id, e.pgh_diff["status"]) for e in updates] == [(str(order.pk), ["failed", "manual_review"])]
    assert [e.pgh_label for e in history] == ["update", "insert"]
    assert "history-clerk" in response.content.decode()  # who: the user's name, read once for the page
