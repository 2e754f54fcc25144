"""The distributor pages a clerk uses: list, search, balances, statement and its Excel export."""

from __future__ import annotations

import datetime
import io
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from config.roles import FINANCE_CLERK
from distributors.models import EntryKind
from tests.factories import fund, make_distributor, make_user, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk_client(client):
    sign_in(client, make_user("clerk", FINANCE_CLERK))
    return client


def test_search_by_code_prefix_and_by_name(clerk_client):
    make_distributor(code="SH001", name="上海一号")
    make_distributor(code="BJ001", name="北京一号")
    url = reverse("admin:distributors_distributor_changelist")

    by_code = clerk_client.get(url, {"q": "SH"})
    by_name = clerk_client.get(url, {"q": "北京"})

    assert [d.code for d in by_code.context["cl"].result_list] == ["SH001"]
    assert [d.code for d in by_name.context["cl"].result_list] == ["BJ001"]


def test_the_change_page_shows_the_accounts_and_their_balances(clerk_client):
    distributor = make_distributor()
    fund(distributor, "1234.56")

    page = clerk_client.get(reverse("admin:distributors_distributor_change", args=[distributor.pk]))

    assert page.status_code == 200
    assert "1234.56" in page.content.decode() or "1,234.56" in page.content.decode()


def test_the_statement_shows_a_running_balance_and_exports_to_xlsx(clerk_client):
    distributor = make_distributor(code="ST001")
    fund(distributor, "100.00")
    fund(distributor, "-30.25", entry_kind=EntryKind.DEDUCTION)
    fund(distributor, "5.00")
    today = timezone.localdate()
    url = reverse("admin:distributors_distributor_statement", args=[distributor.pk])
    params = {"account": "prepaid", "start": today.isoformat(), "end": today.isoformat()}

    page = clerk_client.get(url, params)
    export = clerk_client.get(url, {**params, "format": "xlsx"})

    statement = page.context["statement"]
    assert [e.balance_after for e in statement.entries] == [Decimal("100.00"), Decimal("69.75"), Decimal("74.75")]
    assert statement.opening_balance == Decimal("0.00")
    assert statement.closing_balance == Decimal("74.75")
    assert export["Content-Type"].startswith("application/vnd.openxmlformats")
    rows = list(load_workbook(io.BytesIO(export.content)).active.iter_rows(values_only=True))
    assert len(rows) == 1 + 1 + 3 + 1  # header, opening, three entries, closing
    assert rows[-1][3] == 74.75


def test_a_statement_period_before_the_entries_opens_with_zero_and_an_inverted_period_is_refused(clerk_client):
    distributor = make_distributor()
    fund(distributor, "10.00")
    url = reverse("admin:distributors_distributor_statement", args=[distributor.pk])
    yesterday = timezone.localdate() - datetime.timedelta(days=1)

    empty = clerk_client.get(url, {"account": "prepaid", "start": yesterday, "end": yesterday})
    inverted = clerk_client.get(url, {"account": "prepaid", "start": timezone.localdate(), "end": yesterday})

    assert list(empty.context["statement"].entries) == []
    assert empty.context["statement"].closing_balance == Decimal("0.00")
    assert inverted.context["statement"] is None
    assert inverted.context["form"].non_field_errors()


def test_spreadsheet_cells_that_look_like_formulas_are_neutralized():
    from config.spreadsheets import spreadsheet_safe

    assert spreadsheet_safe("=1+1") == "'=1+1"
    assert spreadsheet_safe("@SUM(A1)") == "'@SUM(A1)"
    assert spreadsheet_safe("-2") == "'-2"
    assert spreadsheet_safe("plain") == "plain"
    assert spreadsheet_safe(Decimal("-2.00")) == Decimal("-2.00")
