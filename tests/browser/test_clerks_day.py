"""The clerk's day, in a real browser, in Chinese, against the back office started by scripts/start.

The tests run in order and hand their records to the next (the `day` dict): a clerk imports
recharges from Excel (one bad row first), fixes and imports them and submits them; a supervisor
enrols the second factor (first time only), approves, watches both ERP syncs succeed and syncs the
17bst products; a clerk places a gift-card order and cannot see its PIN; a supervisor reveals it;
an auditor reads the order's history and can change nothing. Every record carries this run's tag,
so the flow runs again on the same var/ without colliding with earlier runs.
"""

from __future__ import annotations

import base64
import datetime
import re
import secrets
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import Workbook
from playwright.sync_api import Error as PlaywrightError

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

DISTRIBUTOR = "D1001"  # demo distributor kept in both BEST GERP and Wangdiantong
GIFT_CARD = "视频会员卡券 (69)"  # a 17bst product of the sandbox, face value 30
CONFIRM = "是的，我确定"
SYNC_TIMEOUT = 120.0
ORDER_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def day():
    """What one test leaves for the next, and this run's tag (unique voucher numbers)."""
    return {"tag": datetime.datetime.now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(2).upper()}


def needs(day: dict, key: str, step: str):
    if key not in day:
        pytest.fail(f"This step needs {step}, which did not complete (see the test before).")
    return day[key]


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def navigate(page, target) -> None:
    """Click something that loads a new page (a submit button, a link) and wait for that page."""
    locator = page.locator(target) if isinstance(target, str) else target
    with page.expect_navigation():
        locator.click()


def login(page, backoffice, username: str, screenshot: str | None = None) -> None:
    page.goto(backoffice.url("/admin/login/"))
    assert (page.locator("html").get_attribute("lang") or "").startswith("zh")
    page.fill("#id_username", username)
    page.fill("#id_password", backoffice.password)
    if screenshot:
        shot(page, screenshot)
    navigate(page, "#login-form [type=submit]")
    assert "/admin/login/" not in page.url, f"{username} could not sign in: {page.locator('.errornote').all_inner_texts()}"


def login_with_second_factor(page, backoffice, username: str, screenshot_prefix: str) -> None:
    """Password, then the second factor: enrol through the real page the first time, else give a code."""
    login(page, backoffice, username, screenshot=f"{screenshot_prefix}-login")
    totp = backoffice.totp_key(username)
    if "/admin/second-factor/verify/" in page.url:
        if totp.key is None:
            pytest.fail(
                f"{username} already has an authenticator enrolled that these tests did not enrol (no key in "
                f"{totp.path}). Remove it to let them enrol again: "
                ".venv/bin/python manage.py shell -c \"from django_otp.plugins.otp_totp.models import TOTPDevice; "
                f"TOTPDevice.objects.filter(user__username='{username}').delete()\""
            )
        page.fill("#id_token", totp.code())
        shot(page, f"{screenshot_prefix}-second-factor")
        navigate(page, page.get_by_role("button", name="验证", exact=True))
    elif "/admin/second-factor/" in page.url:
        secret = page.inner_text("#second-factor-secret").strip()
        assert page.locator("#second-factor-qr-code svg").count() == 1
        totp.key = base64.b32decode(secret)
        totp.last_step = -1
        totp.save()
        page.fill("#id_token", totp.code())
        shot(page, f"{screenshot_prefix}-enrol-second-factor")
        navigate(page, page.get_by_role("button", name="确认", exact=True))
        assert page.locator("#backup-codes li").count() == 10
        assert "双重验证已绑定" in page.inner_text("#content")
        shot(page, f"{screenshot_prefix}-second-factor-enrolled")
        navigate(page, page.get_by_role("link", name="继续"))
    assert "/admin/second-factor/" not in page.url, page.inner_text("#content")
    assert "/admin/login/" not in page.url


def run_action(page, action: str) -> None:
    """Choose an admin action for the ticked rows and press 执行."""
    page.select_option("select[name=action]", action)
    navigate(page, "button[name=index]")


def messages(page) -> str:
    return " ".join(page.locator("ul.messagelist li").all_inner_texts())


def recharges_workbook(path: Path, rows: list[tuple[str, object, str]], tag: str) -> Path:
    """An .xlsx with the template's Chinese headers: (voucher, amount, remark) per recharge of D1001."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "资金流水"
    sheet.append(["分销商编号", "类型", "金额", "支付方式", "付款账号", "收款账号", "凭证号", "完成时间", "备注"])
    # An hour ago on the back office's clock (Asia/Shanghai): never "in the future", whatever this machine's zone.
    completed = datetime.datetime.now(ZoneInfo("Asia/Shanghai")).replace(microsecond=0, tzinfo=None) \
        - datetime.timedelta(hours=1)
    for voucher, amount, remark in rows:
        sheet.append([DISTRIBUTOR, "充值", amount, "银行转账", "6222020200112233", "755912345610001", voucher, completed,
                      f"{remark}（浏览器测试 {tag}）"])
    workbook.save(path)
    return path


def upload(page, backoffice, path: Path) -> None:
    page.goto(backoffice.url("/admin/distributors/fundtransaction/"))
    navigate(page, "#import-from-excel")
    assert "从 Excel 导入资金流水" in page.inner_text("#content")
    page.set_input_files("#id_file", str(path))
    navigate(page, page.get_by_role("button", name="上传并校验"))
    assert re.search(r"/admin/backoffice/filejob/\d+/change/", page.url), page.inner_text("#content")


def wait_for_import_status(page, wanted: str, timeout: float = 60.0) -> None:
    """The preview refreshes itself while the worker checks or imports; wait for a final status."""
    url = page.url
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = page.inner_text("#import-status", timeout=5_000).strip()
        except PlaywrightError:  # the page's own refresh replaced the document mid-read
            status = ""
        if status == wanted:
            return
        if status == "失败" or time.monotonic() > deadline:
            pytest.fail(f"The import shows “{status}”, expected “{wanted}”:\n{page.inner_text('#content')}")
        time.sleep(1)
        try:
            page.goto(url)
        except PlaywrightError:  # raced the page's own refresh; read again
            pass


def test_clerk_imports_recharges_and_submits_them(backoffice, open_browser, day, tmp_path):
    page = open_browser()
    login_with_second_factor(page, backoffice, "clerk", "01-clerk")
    assert "分销商资金后台" in page.inner_text("body") and "财务工作台" in page.title()  # the Chinese admin
    shot(page, "02-clerk-home")

    tag = day["tag"]
    vouchers = [f"BT{tag}-1", f"BT{tag}-2"]
    bad_file = recharges_workbook(tmp_path / f"recharges-{tag}-with-error.xlsx",
                                  [(vouchers[0], 1000, "银行到账"), (vouchers[1], -200, "金额写错")], tag)
    upload(page, backoffice, bad_file)
    wait_for_import_status(page, "已校验")
    errors = page.locator("#import-errors tbody tr")
    assert errors.count() == 1
    assert errors.first.locator("td").nth(0).inner_text() == "3"  # row 1 is the header
    assert errors.first.locator("td").nth(1).inner_text() == "金额"
    assert errors.first.locator("td").nth(2).inner_text() == "金额必须大于零。"
    assert "无法导入的行" in page.inner_text("#content")
    assert page.locator("#confirm-import").count() == 0  # a file with errors cannot be confirmed
    shot(page, "03-clerk-import-bad-row")

    fixed_file = recharges_workbook(tmp_path / f"recharges-{tag}.xlsx",
                                    [(vouchers[0], 1000, "银行到账"), (vouchers[1], 200, "金额已更正")], tag)
    upload(page, backoffice, fixed_file)
    wait_for_import_status(page, "已校验")
    assert page.locator("#import-errors").count() == 0
    assert page.inner_text("#import-importable") == "2"
    shot(page, "04-clerk-import-preview")
    navigate(page, "#confirm-import")
    wait_for_import_status(page, "已完成")
    assert page.inner_text("#import-created") == "2"
    shot(page, "05-clerk-import-done")

    listing = backoffice.url(f"/admin/distributors/fundtransaction/?voucher_no__in={','.join(vouchers)}")
    page.goto(listing)
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    assert rows.locator("td.field-status").all_inner_texts() == ["草稿", "草稿"]
    page.check("#action-toggle")
    run_action(page, "submit_for_approval")
    assert "提交审批" in page.inner_text("#content")
    assert page.locator("#confirm-objects li").count() == 2
    shot(page, "06-clerk-submit-confirm")
    navigate(page, page.get_by_role("button", name=CONFIRM))
    assert "已提交 2 笔流水审批。" in messages(page)
    page.goto(listing)
    assert page.locator("#result_list td.field-status").all_inner_texts() == ["待审批", "待审批"]
    shot(page, "07-clerk-submitted")
    day["vouchers"] = vouchers


def test_supervisor_approves_and_both_erps_receive_them(backoffice, open_browser, day):
    vouchers = needs(day, "vouchers", "the clerk's submitted import")
    page = open_browser()
    login_with_second_factor(page, backoffice, "supervisor", "08-supervisor")
    listing = backoffice.url(f"/admin/distributors/fundtransaction/?voucher_no__in={','.join(vouchers)}")
    page.goto(listing)
    page.check("#action-toggle")
    run_action(page, "approve")
    assert "批准流水" in page.inner_text("#content")
    assert page.locator("#confirm-objects li").count() == 2
    shot(page, "09-supervisor-approve-confirm")
    navigate(page, page.get_by_role("button", name=CONFIRM))
    assert messages(page).count("已批准；已记入台账；2 个 ERP 同步已排队。") == 2, messages(page)
    shot(page, "10-supervisor-approved")

    # The worker sends each approved transaction to BEST GERP (百世 GERP) and Wangdiantong (旺店通).
    deadline = time.monotonic() + SYNC_TIMEOUT
    while True:
        page.goto(listing)
        summaries = page.locator("#result_list td.field-sync_summary").all_inner_texts()
        if len(summaries) == 2 and all("百世 GERP: 成功" in s and "旺店通: 成功" in s for s in summaries):
            break
        if any(word in s for s in summaries for word in ("失败", "人工复核")) or time.monotonic() > deadline:
            shot(page, "11-supervisor-erp-syncs-FAILED")
            pytest.fail(f"ERP syncs did not both succeed: {summaries}")
        time.sleep(2)
    assert page.locator("#result_list td.field-status").all_inner_texts() == ["已批准", "已批准"]
    shot(page, "11-supervisor-erp-syncs-succeeded")
    navigate(page, page.locator("#result_list tbody tr").first.locator("th a, td a").first)
    inline = page.inner_text("#erp_syncs-group")
    assert "百世 GERP" in inline and "旺店通" in inline and inline.count("成功") >= 2
    shot(page, "12-supervisor-transaction-syncs")

    # Gift cards come from 17bst: the supervisor syncs its product list (new products get a sale price).
    page.goto(backoffice.url("/admin/orders/product/"))
    navigate(page, page.get_by_role("button", name="同步 17bst 产品和余额"))
    assert "17bst 产品已同步" in messages(page), messages(page)
    assert page.get_by_role("link", name="69", exact=True).count() == 1
    shot(page, "13-supervisor-products-synced")
    day["products"] = True


def test_clerk_places_a_gift_card_order_and_cannot_reveal_its_pin(backoffice, open_browser, day):
    needs(day, "products", "the supervisor's 17bst product sync")
    page = open_browser()
    login_with_second_factor(page, backoffice, "clerk", "14a-clerk")
    page.goto(backoffice.url("/admin/orders/rechargeorder/add/"))
    page.locator(".field-distributor .select2-selection").click()
    page.locator(".select2-search__field").fill(DISTRIBUTOR)
    page.locator(".select2-results__option", has_text=DISTRIBUTOR).first.click()
    page.select_option("#id_product", label=GIFT_CARD)
    page.fill("#id_quantity", "1")
    shot(page, "14-clerk-order-form")
    navigate(page, "input[name=_continue]")
    assert re.search(r"/admin/orders/rechargeorder/\d+/change/", page.url), page.inner_text("#content")
    order_url = page.url
    reference = page.locator(".field-client_reference .readonly").inner_text().strip()
    assert reference and "草稿" in page.inner_text(".field-status")
    day["order_url"] = order_url
    day["order"] = reference

    page.goto(backoffice.url(f"/admin/orders/rechargeorder/?q={reference}"))
    assert page.locator("#result_list tbody tr").count() == 1
    page.check("#action-toggle")
    run_action(page, "place")
    assert "提交订单" in page.inner_text("#content")
    shot(page, "15-clerk-place-confirm")
    navigate(page, page.get_by_role("button", name=CONFIRM))
    assert "已提交 1 笔订单：价款已预扣，订单已排队。" in messages(page), messages(page)

    deadline = time.monotonic() + ORDER_TIMEOUT
    while True:
        page.goto(order_url)
        status = page.inner_text(".field-status .readonly").strip()
        if status == "成功":
            break
        if status in ("失败", "人工复核", "未知") or time.monotonic() > deadline:
            shot(page, "16-clerk-order-FAILED")
            pytest.fail(f"The gift-card order is “{status}”: {page.inner_text('.field-status_reason')}")
        time.sleep(2)
    # Read now: a locator is looked up again on whatever page is open when it is used.
    cards_on_the_order_page = page.locator("#card_secrets-group").inner_text()
    assert "••••••" in cards_on_the_order_page  # the order page shows the PIN masked
    shot(page, "16-clerk-order-succeeded")
    day["placed"] = True

    # The card's PIN and number: masked in the list (the number keeps its last four characters), and no
    # reveal action for a clerk.
    page.goto(backoffice.url(f"/admin/orders/cardsecret/?q={reference}"))
    assert page.locator("#result_list tbody tr").count() == 1
    assert page.inner_text("#result_list td.field-pin") == "••••••"
    card_masked = page.inner_text("#result_list tbody tr a").strip()
    assert card_masked.startswith("••••") and card_masked in cards_on_the_order_page
    offered = page.locator("select[name=action] option").evaluate_all("options => options.map(o => o.value)")
    assert "reveal" not in offered and "export_xlsx" not in offered
    shot(page, "17-clerk-card-pin-masked")
    # The reveal action posted anyway (as the supervisor's confirmation page would) shows no PIN.
    card_id = re.search(r"/cardsecret/(\d+)/change/",
                        page.locator("#result_list tbody tr a").first.get_attribute("href")).group(1)
    token = page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    response = page.request.post(
        backoffice.url("/admin/orders/cardsecret/"),
        form={"csrfmiddlewaretoken": token, "action": "reveal", "_selected_action": card_id, "confirmed": "yes",
              "index": "0", "select_across": "0"},
        headers={"Referer": page.url}, max_redirects=0,
    )
    body = response.text()
    assert response.status in (200, 302, 403), response.status
    assert "revealed-pins" not in body and "卡密密码明文" not in body
    # ...and nothing was disclosed: no PIN disclosure is recorded for the clerk.
    page.goto(backoffice.url("/admin/orders/pindisclosure/?q=clerk"))
    assert page.locator("#result_list tbody tr").count() == 0
    shot(page, "18-clerk-no-pin-disclosed")
    day["card_masked"] = card_masked


def test_supervisor_reveals_the_pin(backoffice, open_browser, day):
    reference = needs(day, "order", "the clerk's gift-card order")
    needs(day, "placed", "the clerk's placed gift-card order")
    page = open_browser()
    login_with_second_factor(page, backoffice, "supervisor", "19-supervisor")
    page.goto(backoffice.url(f"/admin/orders/cardsecret/?q={reference}"))
    page.check("#action-toggle")
    run_action(page, "reveal")
    assert "查看卡密密码明文" in page.inner_text("#content")
    shot(page, "20-supervisor-reveal-confirm")
    navigate(page, page.get_by_role("button", name=CONFIRM))
    assert "这些卡密密码仅显示一次" in page.inner_text("#content")
    row = page.locator("#revealed-pins tbody tr")
    assert row.count() == 1
    assert row.locator("td").first.inner_text() == reference
    pin = row.locator("td.pin").inner_text().strip()
    assert pin and "•" not in pin
    card_number = row.locator("td").nth(1).inner_text().strip()  # whole here, beside the PIN
    assert "•" not in card_number
    assert needs(day, "card_masked", "the clerk's masked card list") == "••••" + card_number[-4:]
    shot(page, "21-supervisor-pin-revealed")
    page.goto(backoffice.url(f"/admin/orders/pindisclosure/?q={row.locator('td').nth(1).inner_text()}"))
    assert page.locator("#result_list td.field-user").all_inner_texts() == ["supervisor"]


def test_auditor_reads_the_order_history_and_changes_nothing(backoffice, open_browser, day):
    order_url = needs(day, "order_url", "the clerk's gift-card order")
    page = open_browser()
    login(page, backoffice, "auditor")
    page.goto(order_url)
    assert page.locator("input[name=_save], input[name=_continue], input[name=_addanother]").count() == 0
    assert "查看" in page.inner_text("#content h1") or "充值订单" in page.inner_text("#content")
    shot(page, "22-auditor-order-read-only")

    # The history of the order: the admin's own (历史), then the audit log's events of this row.
    order_id = re.search(r"/(\d+)/change/", order_url).group(1)
    events_link = page.locator("a.events-admin")
    if events_link.count():  # django-pghistory's per-object link, when its template is in effect
        navigate(page, events_link)
    else:
        navigate(page, "a.historylink")
        assert "历史" in page.inner_text("#content h1, #content h2")
        assert "clerk" in page.inner_text("#change-history")  # the clerk added it
        shot(page, "23-auditor-order-admin-history")
        page.goto(backoffice.url(
            f"/admin/pghistory/events/?method=tracks&obj=orders.RechargeOrder:{order_id}&back={order_url}"))
    events = page.locator("#result_list tbody tr")
    # Inserted as a draft, then updated as it was placed, submitted and succeeded; all of this row.
    assert events.count() >= 3
    assert set(page.locator("#result_list td.field-record_id").all_inner_texts()) == {order_id}
    # In the auditor's words: the columns and the events in Chinese, not pghistory's field codes.
    assert {"新建", "修改"} <= set(page.locator("#result_list td.field-event").all_inner_texts())
    assert "PGH" not in page.inner_text("#result_list thead")
    assert page.locator("select[name=action]").count() == 0 and page.locator("a.addlink").count() == 0
    shot(page, "24-auditor-order-events")

    # Changing the order by posting its form anyway is refused.
    page.goto(order_url)
    token = page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    response = page.request.post(
        order_url, form={"csrfmiddlewaretoken": token, "target_account": "changed", "_save": "保存"},
        headers={"Referer": order_url}, max_redirects=0,
    )
    assert response.status == 403, response.status
    page.goto(order_url)
    assert "changed" not in page.inner_text("#content")
