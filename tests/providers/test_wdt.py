"""Wangdiantong client: the request on the wire, every outcome, input checks, and the sandbox."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from urllib3.exceptions import NewConnectionError

from config.provider_settings import provider_accounts
from providers.exceptions import (
    InvalidRequest,
    OutcomeUnknown,
    ProviderMisconfigured,
    ProviderNotReached,
    ProviderRejected,
)
from providers.models import ProviderCall
from providers.results import Outcome
from providers.sandbox.server import Fault
from providers.wdt.client import (
    METHOD_CREATE_RECHARGE_ORDER,
    OPERATION_CREATE_RECHARGE_ORDER,
    GxRechargeOrder,
    PaymentType,
    RechargeType,
    WdtClient,
    WdtSettings,
    parse_answer,
)

pytestmark = pytest.mark.django_db(databases=["default", "call_log"])

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wdt"
BASE_URL = "http://47.92.239.46"
ENDPOINT = BASE_URL + "/openapi"
SID = "wdtapi3"
APP_KEY = "wdt_test"
SECRET = "wdt-test-secret-4b7e"
SALT = "wdt-salt-91c2"
APP_SECRET = f"{SECRET}:{SALT}"
FIXED_TIME = 1716190830.123  # 2024-05-20 15:40:30 in China


@pytest.fixture
def wdt_settings(settings):
    settings.PROVIDERS = provider_accounts(
        {"WDT_BASE_URL": BASE_URL, "WDT_SID": SID, "WDT_APP_KEY": APP_KEY, "WDT_APP_SECRET": APP_SECRET}
    )
    return settings


def fixed_client(**kwargs) -> WdtClient:
    return WdtClient(clock=lambda: FIXED_TIME, **kwargs)


def order(**overrides) -> GxRechargeOrder:
    fields = dict(
        fx_nick_no="6cdea949",
        fx_nick_name="旗舰版分销端wdterp85",
        recharge_type=RechargeType.RECHARGE,
        amount=Decimal("300.00"),
        payment_type=PaymentType.BANK_TRANSFER,
        beneficiary_account="beneficiary_account test",
        voucher_no="FT-20240520-0001",
        remark="五月充值",
    )
    fields.update(overrides)
    return GxRechargeOrder(**fields)


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def assert_no_secret_stored(*secrets: str) -> None:
    rows = list(ProviderCall.objects.all())
    assert rows, "expected at least one call row"
    for row in rows:
        stored = [row.url, row.request_body, json.dumps(row.request_headers, ensure_ascii=False), row.response_body, row.error]
        for secret in secrets:
            assert not any(secret in text for text in stored), f"secret found in call #{row.pk}"


# --- the request on the wire ---------------------------------------------------------------


@responses.activate
def test_the_request_on_the_wire_matches_the_recorded_fixture(wdt_settings):
    responses.post(ENDPOINT, body=fixture_text("create_recharge_order_success.json"))

    fixed_client().create_recharge_order(order())

    sent = responses.calls[0].request
    url = urlsplit(sent.url)
    wire = {
        "method": sent.method,
        "url": sent.url,
        "query": dict(parse_qsl(url.query)),
        "headers": {name: sent.headers[name] for name in ("Content-Type", "Accept", "Content-Length")},
        "body": sent.body.decode("utf-8"),
    }
    recorded = FIXTURES / "create_recharge_order_request.json"
    if os.environ.get("RECORD_PROVIDER_FIXTURES"):
        recorded.write_text(json.dumps(wire, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert wire == json.loads(recorded.read_text(encoding="utf-8"))


@responses.activate
def test_system_parameters_travel_in_the_query_and_the_body_raw(wdt_settings):
    responses.post(ENDPOINT, body=fixture_text("create_recharge_order_success.json"))

    fixed_client().create_recharge_order(order())

    sent = responses.calls[0].request
    query = dict(parse_qsl(urlsplit(sent.url).query))
    assert set(query) == {"sid", "key", "salt", "method", "v", "timestamp", "sign"}
    assert query["method"] == "fenxiao.finance.AccountRecharge.createGxRechargeOrder"
    assert query["timestamp"] == str(1716190830 - 1325347200)
    assert query["salt"] == SALT
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.body.decode("utf-8") == (
        '[{"fx_nick_no":"6cdea949","fx_nick_name":"旗舰版分销端wdterp85","type":1,"amount":300.00,'
        '"payment_type":8,"beneficiary_account":"beneficiary_account test","voucher_no":"FT-20240520-0001",'
        '"remark":"五月充值"}]'
    )
    # sign = md5(secret + name/value pairs sorted by name, body included + secret), recomputed here.
    signed = {**{k: v for k, v in query.items() if k != "sign"}, "body": sent.body.decode("utf-8")}
    expected = hashlib.md5(
        (SECRET + "".join(name + signed[name] for name in sorted(signed)) + SECRET).encode("utf-8")
    ).hexdigest()
    assert query["sign"] == expected


@responses.activate
def test_an_empty_remark_is_left_out(wdt_settings):
    responses.post(ENDPOINT, body=fixture_text("create_recharge_order_success.json"))

    fixed_client().create_recharge_order(order(remark="", amount=Decimal("5"), recharge_type=3, payment_type=10))

    body = json.loads(responses.calls[0].request.body, parse_float=Decimal)
    assert body == [
        {
            "fx_nick_no": "6cdea949",
            "fx_nick_name": "旗舰版分销端wdterp85",
            "type": 3,
            "amount": Decimal("5.00"),
            "payment_type": 10,
            "beneficiary_account": "beneficiary_account test",
            "voucher_no": "FT-20240520-0001",
        }
    ]
    assert b'"amount":5.00' in responses.calls[0].request.body


def test_the_type_and_payment_type_maps():
    assert {t.name: t.value for t in RechargeType} == {
        "RECHARGE": 1, "REBATE": 2, "DEDUCTION": 3, "CREDIT_INCREASE": 4, "CREDIT_DECREASE": 5,
    }
    assert [p.value for p in PaymentType] == list(range(1, 11))
    assert (PaymentType.ALIPAY, PaymentType.WECHAT, PaymentType.CASH, PaymentType.BANK_TRANSFER, PaymentType.OTHER) == (
        1, 2, 7, 8, 10,
    )


# --- outcomes --------------------------------------------------------------------------------


@responses.activate
def test_success_is_recorded_with_the_voucher_as_client_reference(wdt_settings):
    responses.post(ENDPOINT, body=fixture_text("create_recharge_order_success.json"))

    result = fixed_client().create_recharge_order(order())

    assert result.outcome == Outcome.SUCCEEDED
    assert result.client_reference == "FT-20240520-0001"
    assert result.data == {}
    call = ProviderCall.objects.get()
    assert (call.provider, call.operation, call.outcome, call.response_status) == (
        "wdt", "createGxRechargeOrder", Outcome.SUCCEEDED, 200,
    )
    assert call.client_reference == "FT-20240520-0001"
    assert call.url == ENDPOINT
    assert call.request_headers["query"]["sign"]
    assert call.request_headers["query"]["salt"] == "***"
    assert json.loads(call.request_body)[0]["voucher_no"] == "FT-20240520-0001"
    assert_no_secret_stored(APP_SECRET, SECRET, SALT)


@responses.activate
def test_the_documented_error_answer_is_a_rejection_with_its_status_and_message(wdt_settings):
    responses.post(ENDPOINT, body=fixture_text("create_recharge_order_rejected.json"))

    with pytest.raises(ProviderRejected) as caught:
        fixed_client().create_recharge_order(order())

    assert (caught.value.code, caught.value.message) == ("100", "分销商编号不能为空")
    call = ProviderCall.objects.get()
    assert (call.outcome, call.upstream_code) == (Outcome.FAILED, "100")
    assert "分销商编号不能为空" in call.response_body
    assert_no_secret_stored(APP_SECRET, SECRET, SALT)


@pytest.mark.parametrize("status", [1, 2, 100, 1001, -1])
@responses.activate
def test_any_other_integer_status_is_a_rejection(wdt_settings, status):
    responses.post(ENDPOINT, json={"status": status, "message": "错误"})

    with pytest.raises(ProviderRejected) as caught:
        fixed_client().create_recharge_order(order())

    assert caught.value.code == str(status)
    assert ProviderCall.objects.get().outcome == Outcome.FAILED


@pytest.mark.parametrize(
    "answer",
    [{"data": {}}, {"status": "0", "data": {}}, {"status": None}, {"status": True}, {"status": 0.0}, [0], "ok"],
)
@responses.activate
def test_an_answer_without_a_readable_status_is_unknown_never_success(wdt_settings, answer):
    responses.post(ENDPOINT, json=answer)

    with pytest.raises(OutcomeUnknown):
        fixed_client().create_recharge_order(order())

    assert ProviderCall.objects.get().outcome == Outcome.UNKNOWN


@responses.activate
def test_connection_refused_means_nothing_was_sent(wdt_settings):
    responses.post(
        ENDPOINT,
        body=requests.exceptions.ConnectionError(
            NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
        ),
    )

    with pytest.raises(ProviderNotReached):
        fixed_client().create_recharge_order(order())

    call = ProviderCall.objects.get()
    assert (call.outcome, call.response_status) == ("", None)
    assert_no_secret_stored(APP_SECRET, SECRET, SALT)


@responses.activate
def test_a_read_timeout_is_unknown(wdt_settings):
    responses.post(ENDPOINT, body=requests.exceptions.ReadTimeout("Read timed out."))

    with pytest.raises(OutcomeUnknown):
        fixed_client().create_recharge_order(order())

    assert ProviderCall.objects.get().outcome == Outcome.UNKNOWN
    assert len(responses.calls) == 1


@responses.activate
def test_a_server_error_is_unknown(wdt_settings):
    responses.post(ENDPOINT, status=503, body="Service Unavailable")

    with pytest.raises(OutcomeUnknown):
        fixed_client().create_recharge_order(order())

    call = ProviderCall.objects.get()
    assert (call.outcome, call.response_status) == (Outcome.UNKNOWN, 503)


@responses.activate
def test_malformed_json_is_unknown(wdt_settings):
    responses.post(ENDPOINT, body='{"status":0,"data":')

    with pytest.raises(OutcomeUnknown):
        fixed_client().create_recharge_order(order())

    assert ProviderCall.objects.get().outcome == Outcome.UNKNOWN


@responses.activate
def test_a_secret_echoed_by_the_upstream_is_not_stored(wdt_settings):
    responses.post(ENDPOINT, json={"status": 1, "message": f"签名错误 {APP_SECRET}"})

    with pytest.raises(ProviderRejected):
        fixed_client().create_recharge_order(order())

    assert_no_secret_stored(APP_SECRET, SECRET)


# --- bad input and configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": Decimal("0")}, "amount"),
        ({"amount": Decimal("-1")}, "amount"),
        ({"amount": Decimal("99999.01")}, "amount"),
        ({"amount": Decimal("1.001")}, "amount"),
        ({"amount": 300.0}, "amount"),
        ({"fx_nick_no": ""}, "fx_nick_no"),
        ({"fx_nick_no": "N" * 33}, "fx_nick_no"),
        ({"fx_nick_name": ""}, "fx_nick_name"),
        ({"fx_nick_name": "名" * 51}, "fx_nick_name"),
        ({"remark": "备" * 256}, "remark"),
        ({"recharge_type": 6}, "recharge_type"),
        ({"recharge_type": None}, "recharge_type"),
        ({"payment_type": 11}, "payment_type"),
        ({"payment_type": True}, "payment_type"),
        ({"beneficiary_account": ""}, "beneficiary_account"),
        ({"voucher_no": ""}, "voucher_no"),
        ({"voucher_no": "V" * 65}, "voucher_no"),
    ],
)
@responses.activate
def test_bad_input_is_refused_before_anything_is_sent_or_recorded(wdt_settings, overrides, field):
    with pytest.raises(InvalidRequest) as caught:
        fixed_client().create_recharge_order(order(**overrides))

    assert caught.value.field == field
    assert caught.value.message
    assert len(responses.calls) == 0
    assert ProviderCall.objects.count() == 0


def test_the_limits_themselves_are_accepted():
    accepted = order(
        amount=Decimal("99999"), fx_nick_no="N" * 32, fx_nick_name="名" * 50, remark="备" * 255, voucher_no="V" * 64
    )
    assert accepted.amount == Decimal("99999.00")


def test_a_missing_variable_is_named(settings):
    settings.PROVIDERS = provider_accounts({"WDT_BASE_URL": BASE_URL, "WDT_SID": SID, "WDT_APP_SECRET": APP_SECRET})

    with pytest.raises(ProviderMisconfigured, match="WDT_APP_KEY"):
        fixed_client().create_recharge_order(order())

    assert ProviderCall.objects.count() == 0


def test_an_appsecret_without_salt_is_misconfigured(settings):
    settings.PROVIDERS = provider_accounts(
        {"WDT_BASE_URL": BASE_URL, "WDT_SID": SID, "WDT_APP_KEY": APP_KEY, "WDT_APP_SECRET": "nosalt"}
    )

    with pytest.raises(ProviderMisconfigured, match="WDT_APP_SECRET"):
        WdtSettings.for_account()


def test_settings_hide_the_secret_and_accept_the_documented_address(settings):
    settings.PROVIDERS = provider_accounts(
        {"WDT_BASE_URL": "https://wdt.wangdian.cn/openapi", "WDT_SID": SID, "WDT_APP_KEY": APP_KEY, "WDT_APP_SECRET": APP_SECRET}
    )

    config = WdtSettings.for_account()

    assert config.endpoint == "https://wdt.wangdian.cn/openapi"
    assert (config.secret, config.salt) == (SECRET, SALT)
    assert APP_SECRET not in repr(config) and SECRET not in repr(config)


# --- against the sandbox (real HTTP) -----------------------------------------------------


def unique_voucher() -> str:
    return f"V{uuid.uuid4().hex[:20]}"


@pytest.mark.sandbox
def test_sandbox_round_trip(sandbox, sandbox_environment):
    voucher = unique_voucher()

    result = WdtClient().create_recharge_order(order(voucher_no=voucher, amount=Decimal("123.45")))

    assert result.outcome == Outcome.SUCCEEDED
    stored = sandbox.vendor("wdt").orders[voucher]
    assert stored["amount"] == Decimal("123.45")
    assert stored["fx_nick_name"] == "旗舰版分销端wdterp85"
    secret, salt = sandbox_environment["WDT_APP_SECRET"].split(":", 1)
    assert_no_secret_stored(sandbox_environment["WDT_APP_SECRET"], secret, salt)


@pytest.mark.sandbox
def test_sandbox_refuses_a_bad_signature(sandbox, sandbox_environment, settings):
    # A second account with the right sid, key and salt but the wrong secret.
    _, salt = sandbox_environment["WDT_APP_SECRET"].split(":", 1)
    settings.PROVIDERS = provider_accounts(
        {
            **sandbox_environment,
            "WDT_ACCOUNTS": "forged",
            "WDT_FORGED_BASE_URL": sandbox_environment["WDT_BASE_URL"],
            "WDT_FORGED_SID": sandbox_environment["WDT_SID"],
            "WDT_FORGED_APP_KEY": sandbox_environment["WDT_APP_KEY"],
            "WDT_FORGED_APP_SECRET": f"not-the-secret:{salt}",
        }
    )
    voucher = unique_voucher()

    with pytest.raises(ProviderRejected) as caught:
        WdtClient(merchant_account="forged").create_recharge_order(order(voucher_no=voucher))

    assert caught.value.message == "签名错误"
    assert voucher not in sandbox.vendor("wdt").orders


@pytest.mark.sandbox
def test_sandbox_refuses_a_reused_voucher(sandbox):
    voucher = unique_voucher()
    WdtClient().create_recharge_order(order(voucher_no=voucher))

    with pytest.raises(ProviderRejected) as caught:
        WdtClient().create_recharge_order(order(voucher_no=voucher, amount=Decimal("1.00")))

    assert (caught.value.code, caught.value.message) == ("100", "支付凭证已存在")
    assert sandbox.vendor("wdt").orders[voucher]["amount"] == Decimal("300.00")
    assert list(ProviderCall.objects.order_by("id").values_list("outcome", flat=True)) == [
        Outcome.SUCCEEDED, Outcome.FAILED,
    ]


@pytest.mark.sandbox
def test_sandbox_refuses_a_stale_timestamp(sandbox):
    voucher = unique_voucher()
    three_minutes_ago = time.time() - 180

    with pytest.raises(ProviderRejected) as caught:
        WdtClient(clock=lambda: three_minutes_ago).create_recharge_order(order(voucher_no=voucher))

    assert "时间戳" in caught.value.message
    assert voucher not in sandbox.vendor("wdt").orders


@pytest.mark.sandbox
def test_sandbox_validates_arguments_like_the_vendor(sandbox):
    # Bypass our own input checks to see the vendor's answer to a missing distributor code.
    client = WdtClient()
    arguments = {**order(voucher_no=unique_voucher()).arguments(), "fx_nick_no": ""}
    prepared = client.prepare(METHOD_CREATE_RECHARGE_ORDER, OPERATION_CREATE_RECHARGE_ORDER, [arguments])

    with pytest.raises(ProviderRejected) as caught:
        client.execute(prepared, parse_answer)

    assert (caught.value.code, caught.value.message) == ("100", "分销商编号不能为空")


@pytest.mark.sandbox
def test_sandbox_timeout_is_unknown_and_not_resent(sandbox, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.5
    sandbox.add_fault(Fault(vendor="wdt", kind="timeout", delay_ms=1500))
    voucher = unique_voucher()

    with pytest.raises(OutcomeUnknown):
        WdtClient().create_recharge_order(order(voucher_no=voucher))

    vendor = sandbox.vendor("wdt")
    # The sandbox created the order before holding the answer; the client sent it exactly once.
    assert len(vendor.received_for(voucher)) == 1
    assert voucher in vendor.orders
    call = ProviderCall.objects.get()
    assert (call.outcome, call.client_reference) == (Outcome.UNKNOWN, voucher)


@pytest.mark.sandbox
def test_sandbox_injected_rejection_uses_the_vendor_shape(sandbox):
    sandbox.add_fault(
        Fault(vendor="wdt", kind="reject", operation="createGxRechargeOrder", code="100", message="分销商不存在")
    )

    with pytest.raises(ProviderRejected) as caught:
        WdtClient().create_recharge_order(order(voucher_no=unique_voucher()))

    assert (caught.value.code, caught.value.message) == ("100", "分销商不存在")


@pytest.mark.sandbox
def test_sandbox_server_error_is_unknown(sandbox):
    sandbox.add_fault(Fault(vendor="wdt", kind="http_500"))
    voucher = unique_voucher()

    with pytest.raises(OutcomeUnknown):
        WdtClient().create_recharge_order(order(voucher_no=voucher))

    assert voucher not in sandbox.vendor("wdt").orders
