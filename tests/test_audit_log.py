"""An auditor reads the audit log in their language, narrows it the way an audit does, and changes nothing.

The story: a clerk records a recharge for distributor A and places an order with a gift card for it;
a supervisor approves the recharge from the fund transaction list, which changes its amount, status
and decision time and queues its ERP sync. Distributor B has rows of its own. The auditor then
reads, filters and searches the log.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pghistory
import pytest
from django.apps import apps
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone, translation
from pghistory.models import Events

from config import history_display
from config.history import ContextActionFilter
from config.roles import AUDITOR, FINANCE_CLERK, FINANCE_SUPERVISOR
from distributors.models import (
    Account,
    Distributor,
    ErpSync,
    FundTransaction,
    FundTransactionStatus,
    FundTransactionType,
    LedgerEntry,
)
from orders.models import CardSecret, OrderKind, OrderStatus, Product, RechargeOrder
from orders.pins import encrypt_pin, masked_card_number
from providers.models import Provider
from tests.factories import fund, make_distributor, make_user, sign_in

pytestmark = pytest.mark.django_db

AUDIT_LOG = "admin:pghistory_events_changelist"
PIN = "493017728406"
CARD_NUMBER = "8860012345679999"
DECIDED_AT = datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=datetime.UTC)  # 08:00:30 in Asia/Shanghai


@pytest.fixture
def people():
    return {
        "clerk": make_user("audit-clerk", FINANCE_CLERK),
        "supervisor": make_user("audit-supervisor", FINANCE_SUPERVISOR),
        "auditor": make_user("audit-reader", AUDITOR),
    }


def records_of(code: str, clerk, *, suffix: str) -> dict:
    """A funded distributor with a recharge imported as a draft and a delivered gift-card order.

    Every write has a context of its own: inside one test transaction a context would otherwise
    stay attached to the writes that follow it.
    """
    with pghistory.context(source="command", command="seed"):
        distributor = make_distributor(code=code)
        fund(distributor, "500.00")
    with pghistory.context(user=clerk.pk, source="import", import_job=41):
        recharge = FundTransaction.objects.create(
            distributor=distributor, type=FundTransactionType.RECHARGE, amount=Decimal("1234.5"),
            voucher_no=f"VOUCHER-{suffix}", created_by=clerk,
        )
    with pghistory.context(user=clerk.pk, source="web", url="/admin/orders/rechargeorder/add/"):
        product, _created = Product.objects.get_or_create(
            provider=Provider.BST17, code="AUDIT-1",
            defaults={"name": "话费卡 100", "kind": OrderKind.GIFT_CARD, "sale_price": Decimal("98.50")},
        )
        order = RechargeOrder.objects.create(
            distributor=distributor, product=product, provider=product.provider, kind=product.kind,
            client_reference=f"2026010100000000{suffix}", price_charged=Decimal("98.50"),
            status=OrderStatus.SUCCEEDED, created_by=clerk,
        )
    with pghistory.context(source="job", task="orders.submit_order", job_id=7):
        card = CardSecret.objects.create(order=order, card_number=f"{CARD_NUMBER[:-4]}{suffix}",
                                         pin_ciphertext=encrypt_pin(PIN))
    return {"distributor": distributor, "recharge": recharge, "order": order, "card": card}


def approve(recharge, supervisor) -> ErpSync:
    """What the approval writes, attributed as the admin action's request would attribute it."""
    with pghistory.context(user=supervisor.pk, source="web", action="approve",
                           url=reverse("admin:distributors_fundtransaction_changelist")):
        FundTransaction.objects.filter(pk=recharge.pk).update(
            status=FundTransactionStatus.APPROVED, amount=Decimal("1300"), decided_by=supervisor,
            decided_at=DECIDED_AT,
        )
        return ErpSync.objects.create(fund_transaction=recharge, target=Provider.BEST_GERP,
                                      client_reference=f"ERP-{recharge.voucher_no}")


@pytest.fixture
def story(people):
    a = records_of("AUD-A", people["clerk"], suffix="0001")
    b = records_of("AUD-B", people["clerk"], suffix="0002")
    a["sync"] = approve(a["recharge"], people["supervisor"])
    b["sync"] = approve(b["recharge"], people["supervisor"])
    return {"a": a, "b": b, **people}


def page_of(client, headers=None, **params) -> str:
    response = client.get(reverse(AUDIT_LOG), params, headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def listed(client, **params) -> list:
    response = client.get(reverse(AUDIT_LOG), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def distributor_of(event) -> Distributor:
    """The distributor the recorded row belongs to, followed through its foreign keys."""
    row = apps.get_model(event.pgh_obj_model)._default_manager.get(pk=event.pgh_obj_id)
    for step in ("account", "fund_transaction", "order"):
        row = getattr(row, step, row)
    return row if isinstance(row, Distributor) else row.distributor


# --- in the auditor's language --------------------------------------------------------------------


def test_the_log_speaks_chinese_with_labels_money_and_local_times(client, story):
    sign_in(client, story["auditor"])

    page = page_of(client, q=story["a"]["recharge"].voucher_no)

    for header in ("时间", "记录类型", "记录编号", "事件", "用户", "来源", "操作", "变更"):
        assert f"<span>{header}</span>" in page, header
    for raw in ("Pgh created at", "Pgh obj model", "Pgh diff"):
        assert raw not in page
    # The approval: each changed field by its verbose name, "before → after", as the admin shows it.
    assert "状态: 草稿 → 已批准" in page
    assert "金额: 1234.50 → 1300.00" in page
    assert "审批时间: - → 2026-01-01 08:00:30" in page
    assert "审批人: - → audit-supervisor" in page and "创建人: audit-clerk" in page  # users by name
    assert "批准所选流水（涉及资金变动）" in page  # the admin action by its label, not "approve"
    assert "网页 / 后台" in page and "导入 #41" in page
    assert "资金流水" in page and "新建" in page and "修改" in page
    assert "audit-supervisor" in page
    assert "pending_approval" not in page and '"status"' not in page
    # The order and its card: a form sent from the order's add page, a background job.
    order_page = page_of(client, q=story["a"]["order"].client_reference)
    assert "在新增页面添加" in order_page
    assert "后台任务" in order_page and "订单提交" in order_page
    assert "收取价格: 98.50" in order_page  # an insert shows what the row was created with


def test_the_log_speaks_english_on_request(client, story):
    sign_in(client, story["auditor"])

    page = page_of(client, headers={"accept-language": "en"}, q=story["a"]["recharge"].voucher_no)

    assert "<span>Record type</span>" in page and "<span>Changes</span>" in page
    assert "status: Draft → Approved" in page
    assert "amount: 1234.50 → 1300.00" in page
    assert "Approve selected transactions (moves money)" in page


def test_a_change_that_does_not_show_is_left_out():
    moved_within_a_second = ["2026-01-01T00:00:00.100000+00:00", "2026-01-01T00:00:00.900000+00:00"]

    with translation.override("zh-hans"):
        lines = history_display.changes("distributors.Account", {"balance": [0, 500], "updated_at": moved_within_a_second})

    assert lines == ["余额: 0.00 → 500.00"]


def test_a_card_shows_its_number_masked_and_never_its_pin(client, story):
    sign_in(client, story["auditor"])
    card = story["a"]["card"]
    event = Events.objects.filter(pgh_obj_model="orders.CardSecret", pgh_obj_id=str(card.pk)).get()

    listing = page_of(client, q=story["a"]["order"].client_reference)
    entry = client.get(reverse("admin:pghistory_events_change", args=[quote(event.pk)])).content.decode()

    for page in (listing, entry):
        assert masked_card_number(card.card_number) in page
        assert card.card_number not in page and PIN not in page
        assert "（已加密，不显示）" in page
        assert bytes(card.pin_ciphertext).hex() not in page


def test_an_entry_page_shows_the_event_in_words(client, story):
    sign_in(client, story["auditor"])
    recharge = story["a"]["recharge"]
    update = Events.objects.filter(pgh_obj_model="distributors.FundTransaction", pgh_obj_id=str(recharge.pk),
                                   pgh_label="update").get()

    page = client.get(reverse("admin:pghistory_events_change", args=[quote(update.pk)])).content.decode()

    assert "状态: 草稿 → 已批准" in page
    assert f"凭证号: {recharge.voucher_no}" in page  # the row as saved, every field
    assert "audit-supervisor" in page
    assert "Pgh " not in page


def test_the_auditor_menu_and_title_name_the_audit_log(client, story):
    sign_in(client, story["auditor"])

    index = client.get(reverse("admin:index")).content.decode()
    listing = page_of(client)

    assert "审计历史" in index and "审计日志" in index
    assert "<h1>审计日志</h1>" in listing


# --- filters and search ---------------------------------------------------------------------------


def test_the_distributor_filter_lists_its_rows_and_the_rows_hanging_off_them(client, story):
    sign_in(client, story["auditor"])
    a = story["a"]["distributor"]

    events = listed(client, distributor="aud-a")  # the code, in any case

    assert {distributor_of(event) for event in events} == {a}
    assert {event.pgh_obj_model for event in events} == {
        "distributors.Distributor", "distributors.Account", "distributors.LedgerEntry",
        "distributors.FundTransaction", "distributors.ErpSync", "orders.RechargeOrder", "orders.CardSecret",
    }
    expected = (Events.objects.filter(pgh_obj_model="distributors.Distributor", pgh_obj_id=str(a.pk)).count()
                + sum(Events.objects.tracks(*rows).count() for rows in (
                    list(Account.objects.filter(distributor=a)),
                    list(LedgerEntry.objects.filter(account__distributor=a)),
                    [story["a"]["recharge"]], [story["a"]["sync"]], [story["a"]["order"]], [story["a"]["card"]])))
    assert len(events) == expected


def test_filters_by_user_source_action_and_record_type_narrow_the_list(client, story):
    sign_in(client, story["auditor"])
    supervisor, clerk = story["supervisor"], story["clerk"]

    by_supervisor = listed(client, user=supervisor.pk)
    imported = listed(client, source="import")
    approvals = listed(client, admin_action="approve")
    erp_syncs = listed(client, event_model="distributors.erpsyncevent")
    clerk_on_a = listed(client, user=clerk.pk, distributor="AUD-A")

    assert len(by_supervisor) == 4  # per distributor: the approval, its ERP sync
    assert {event.pgh_context["user"] for event in by_supervisor} == {supervisor.pk}
    assert [event.pgh_obj_model for event in imported] == ["distributors.FundTransaction"] * 2
    assert {(event.pgh_obj_model, event.pgh_label) for event in approvals} == {
        ("distributors.FundTransaction", "update"), ("distributors.ErpSync", "insert")}
    assert len(erp_syncs) == 2
    assert {distributor_of(event) for event in clerk_on_a} == {story["a"]["distributor"]}
    assert {event.pgh_context["user"] for event in clerk_on_a} == {clerk.pk}


def test_the_action_filter_lists_the_actions_of_tracked_lists_by_their_labels(client, story):
    sign_in(client, story["auditor"])

    response = client.get(reverse(AUDIT_LOG))
    [actions] = [spec for spec in response.context["cl"].filter_specs if isinstance(spec, ContextActionFilter)]
    choices = dict(actions.lookup_choices)

    assert choices["approve"] == "批准所选流水（涉及资金变动）"
    assert choices["place"] == "提交所选订单（预扣价款） / 提交所选批次（预扣每一项的价款）"  # two lists, one name
    assert "cleanup_expired_attempts" not in choices and "abort" not in choices  # axes, procrastinate


def test_the_time_filter_takes_whole_local_days(client, story):
    sign_in(client, story["auditor"])
    today = timezone.localdate()
    everything = listed(client)

    assert listed(client, pgh_created_at__from=today.isoformat(), pgh_created_at__to=today.isoformat()) == everything
    assert listed(client, pgh_created_at__to=today.isoformat()) == everything  # the last day is included
    assert listed(client, pgh_created_at__from=(today + datetime.timedelta(days=1)).isoformat()) == []
    assert listed(client, pgh_created_at__to=(today - datetime.timedelta(days=1)).isoformat()) == []


def test_the_time_filter_form_keeps_the_other_filters(client, story):
    sign_in(client, story["auditor"])

    page = page_of(client, source="web", q="AUD-A")

    assert 'type="date" name="pgh_created_at__from"' in page
    assert '<input type="hidden" name="source" value="web">' in page
    assert '<input type="hidden" name="q" value="AUD-A">' in page


def test_search_by_order_number_finds_the_order_and_its_cards(client, story):
    sign_in(client, story["auditor"])
    order = story["a"]["order"]

    events = listed(client, q=order.client_reference)

    assert {(event.pgh_obj_model, event.pgh_obj_id) for event in events} == {
        ("orders.RechargeOrder", str(order.pk)), ("orders.CardSecret", str(story["a"]["card"].pk))}


def test_search_by_voucher_or_client_reference_finds_the_transaction_and_its_syncs(client, story):
    sign_in(client, story["auditor"])
    recharge, sync = story["a"]["recharge"], story["a"]["sync"]

    by_voucher = listed(client, q=recharge.voucher_no)
    by_reference = listed(client, q=sync.client_reference)
    nothing = listed(client, q="no-such-number")

    assert {(e.pgh_obj_model, e.pgh_label) for e in by_voucher} == {
        ("distributors.FundTransaction", "insert"), ("distributors.FundTransaction", "update"),
        ("distributors.ErpSync", "insert")}
    assert {e.pgh_obj_id for e in by_voucher if e.pgh_obj_model == "distributors.FundTransaction"} == {str(recharge.pk)}
    assert [(e.pgh_obj_model, e.pgh_obj_id) for e in by_reference] == [("distributors.ErpSync", str(sync.pk))]
    assert nothing == []


def test_a_search_term_with_sql_or_percent_signs_finds_nothing_and_breaks_nothing(client, story):
    sign_in(client, story["auditor"])

    assert listed(client, q="50% off") == []
    assert listed(client, q="x' OR '1'='1") == []
    assert listed(client, distributor="x' OR '1'='1") == []


def test_hand_edited_parameters_get_the_admins_invalid_filter_page_not_an_error(client, story):
    sign_in(client, story["auditor"])

    assert client.get(reverse(AUDIT_LOG), {"user": "1 OR 1=1"}).status_code == 302  # ?e=1
    assert client.get(reverse(AUDIT_LOG), {"pgh_created_at__gte": "yesterday"}).status_code == 302
    back_elsewhere = page_of(client, obj=f"orders.RechargeOrder:{story['a']['order'].pk}", back="javascript:alert(1)")
    assert 'href="javascript:' not in back_elsewhere  # no "Back" link to it (the filters keep the parameter)


# --- read-only, and cheap -------------------------------------------------------------------------


def test_an_auditor_can_read_an_entry_but_not_change_add_or_delete_one(client, story):
    sign_in(client, story["auditor"])
    event = Events.objects.filter(pgh_obj_model="distributors.FundTransaction").first()
    change = reverse("admin:pghistory_events_change", args=[quote(event.pk)])

    assert client.get(change).status_code == 200
    assert client.post(change, {"pgh_label": "forged"}).status_code == 403
    assert client.post(reverse("admin:pghistory_events_delete", args=[quote(event.pk)]), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:pghistory_events_add")).status_code == 403
    assert Events.objects.filter(pgh_obj_model="distributors.FundTransaction").first().pgh_label == event.pgh_label


def test_a_page_of_many_events_takes_a_bounded_number_of_queries(client, story, django_assert_max_num_queries):
    clerk = story["clerk"]
    for n in range(3, 40):
        records_of(f"AUD-{n:03d}", clerk, suffix=f"{n:04d}")
    sign_in(client, story["auditor"])

    with django_assert_max_num_queries(11):
        response = client.get(reverse(AUDIT_LOG))
    with django_assert_max_num_queries(13):
        filtered = client.get(reverse(AUDIT_LOG), {"distributor": "AUD-A", "q": "AUD-A", "source": "web"})

    assert len(response.context["cl"].result_list) == 100
    assert filtered.status_code == 200
