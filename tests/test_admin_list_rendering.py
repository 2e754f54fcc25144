"""The big admin lists render their rows cheaply, and the page reads exactly as Django's would.

A page of 100 rows is some 1,000 cells: the lists write the row checkbox and the row links
directly, join each row's cells in one filter call and read the ERP sync labels from a dict.
These tests pin that the HTML is the one Django's own code gives, and that the work per row
stays Python, never a template rendered per row.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import django
import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import result_list
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.template import Context, Engine
from django.template.loader import get_template
from django.urls import reverse
from django.utils import translation

from distributors.models import ErpSync, FundTransaction, FundTransactionType, SyncStatus
from orders.models import OrderKind, Product, RechargeOrder
from providers.models import Provider
from tests.factories import make_distributor, sign_in, verify_second_factor
from tests.test_admin_lists import LISTS, add_rows

pytestmark = pytest.mark.django_db

DJANGO_ADMIN_TEMPLATES = Path(django.__file__).parent / "contrib" / "admin" / "templates"


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


def changelist(client, name: str, **params) -> ChangeList:
    response = client.get(reverse(LISTS[name]), params)
    assert response.status_code == 200
    return response.context["cl"]


@pytest.mark.parametrize("name", LISTS)
def test_a_page_renders_the_same_templates_however_many_rows_it_shows(admin_client, product, name, monkeypatch):
    add_rows(6, product, admin_client.user)

    monkeypatch.setattr("django.contrib.admin.ModelAdmin.list_per_page", 2)
    few = [template.name for template in admin_client.get(reverse(LISTS[name])).templates]
    monkeypatch.setattr("django.contrib.admin.ModelAdmin.list_per_page", 6)
    more = [template.name for template in admin_client.get(reverse(LISTS[name])).templates]

    # Django's own row checkbox renders two form templates per row.
    assert few == more


@pytest.mark.parametrize("language", ["zh-hans", "en"])
@pytest.mark.parametrize("model", [RechargeOrder, FundTransaction])
def test_the_row_checkbox_is_the_one_django_renders(model, language):
    model_admin = admin.site._registry[model]
    if model is RechargeOrder:
        obj = RechargeOrder(pk=7, client_reference='<b>"R&D\'s</b>')  # its __str__, escaped in the label
    else:
        obj = FundTransaction(pk=8, type=FundTransactionType.REFUND, amount=Decimal("12.50"))

    with translation.override(language):
        ours = model_admin.action_checkbox(obj)
        djangos = admin.ModelAdmin.action_checkbox(model_admin, obj)

    assert ours == djangos


@pytest.mark.parametrize("params", [{}, {"p": "2", "o": "-1"}, {"q": "a b/分&x=1"}],
                         ids=["plain", "sorted page 2", "searched"])
@pytest.mark.parametrize("name", LISTS)
def test_the_row_links_are_the_ones_django_builds(admin_client, product, name, params, monkeypatch):
    monkeypatch.setattr("django.contrib.admin.ModelAdmin.list_per_page", 1)
    add_rows(3, product, admin_client.user)
    cl = changelist(admin_client, name, **params)
    # Keys that the admin's quote() and then the URL's percent-encoding both have to escape.
    awkward = [SimpleNamespace(**{cl.pk_attname: key})
               for key in [12, "orders.RechargeOrderEvent:12", "a/b?c#d%e_f", "分销商 1", "x;y=z&w+v"]]

    for row in [*cl.result_list, *awkward]:
        # As items_for_result links a row: the change URL, then the filters that lead back here.
        ours = add_preserved_filters({"preserved_filters": cl.preserved_filters, "opts": cl.opts},
                                     cl.url_for_result(row))
        djangos = add_preserved_filters({"preserved_filters": cl.row_preserved_filters, "opts": cl.opts},
                                        ChangeList.url_for_result(cl, row))
        assert ours == djangos
    if params:
        assert "_changelist_filters=" in ours
    if "p" in params:
        assert cl.result_list


@pytest.mark.parametrize("name", [*LISTS, "products"])
def test_the_rows_are_the_html_of_djangos_change_list_results_template(admin_client, product, name):
    add_rows(3, product, admin_client.user)
    if name == "products":  # list_editable: each row carries its form
        response = admin_client.get(reverse("admin:orders_product_changelist"))
        cl = response.context["cl"]
    else:
        cl = changelist(admin_client, name)
    context = result_list(cl)
    djangos = Engine(dirs=[DJANGO_ADMIN_TEMPLATES], libraries={"i18n": "django.templatetags.i18n"}).get_template(
        "admin/change_list_results.html"
    )

    ours = get_template("admin/change_list_results.html").render(context)
    expected = djangos.render(Context(context))

    assert ours == expected
    assert ours.count("<tr>") == len(cl.result_list) + 1  # the header row, then one per row


def test_the_erp_sync_column_reads_like_get_display_in_each_language(admin_client):
    distributor = make_distributor(code="D0001")
    transaction = FundTransaction.objects.create(
        distributor=distributor, type=FundTransactionType.RECHARGE, amount=Decimal("100.00"), voucher_no="V1",
        created_by=admin_client.user,
    )
    ErpSync.objects.create(fund_transaction=transaction, target=Provider.BEST_GERP, client_reference="C1",
                           status=SyncStatus.MANUAL_REVIEW)
    ErpSync.objects.create(fund_transaction=transaction, target=Provider.WDT, client_reference="C2",
                           status=SyncStatus.FAILED)
    syncs = list(transaction.erp_syncs.all())

    for language in ("zh-hans", "en"):
        response = admin_client.get(reverse(LISTS["fund transactions"]), HTTP_ACCEPT_LANGUAGE=language)
        with translation.override(language):
            expected = ", ".join(f"{s.get_target_display()}: {s.get_status_display()}" for s in syncs)
        cells = re.findall(r'<td class="field-sync_summary">(.*?)</td>', response.content.decode())
        assert cells == [expected]
