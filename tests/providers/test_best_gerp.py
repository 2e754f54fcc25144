"""BEST GERP client: the request on the wire, every outcome, input checks, and the sandbox."""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import hashlib
import json
import os
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import responses
from django.db import transaction
from urllib3.exceptions import NewConnectionError

from config.provider_settings import provider_accounts
from providers.best_gerp.client import (
    BestGerpClient,
    BestGerpSettings,
    DistributorEnv,
    PayChannel,
    RechargeRefund,
    TransactionType,
)
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

pytestmark = pytest.mark.django_db(databases=["default", "call_log"])

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "best_gerp"
BASE_URL = "https://gerp-test1.800best.com"
ENDPOINT = BASE_URL + "/api/v1/distribution"
APP_ID = "TESTAPP01"
APP_SECRET = "best-app-secret-9f4c2e71d0"
FIXED_TIME = 1716190830.123  # 2024-05-20 15:40:30.123 in China
FIXED_NONCE = "5f1c0c7e2d9a4b8e9c3f0a1b2c3d4e5f"


@pytest.fixture
def best_settings(settings):
    settings.PROVIDERS = provider_accounts(
        {"BEST_GERP_BASE_URL": BASE_URL, "BEST_GERP_APP_ID": APP_ID, "BEST_GERP_APP_SECRET": APP_SECRET}
    )
    return settings


def fixed_client(**kwargs) -> BestGerpClient:
    return BestGerpClient(clock=lambda: FIXED_TIME, nonce=lambda: FIXED_NONCE, **kwargs)


def recharge(**overrides) -> RechargeRefund:
    fields = dict(
        distributor_customer_name="QY123456",
        distributor_env=DistributorEnv.DOMESTIC,
        transaction_type=TransactionType.RECHARGE,
        total_price=Decimal("100.50"),
        pay_channel=PayChannel.ALIPAY,
        distributor_account="6222000011112222",
        transaction_complete_time=datetime.datetime(2024, 5, 20, 7, 40, 30, tzinfo=datetime.UTC),
        supplier_account="acct-001",
        remark="五月充值",
    )
    fields.update(overrides)
    return RechargeRefund(**fields)


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode("utf-8")
        for part in message.iter_parts()
    }


def assert_no_secret_stored(*secrets: str) -> None:
    rows = list(ProviderCall.objects.all())
    assert rows, "expected at least one call row"
    for row in rows:
        stored = [row.url, row.request_body, json.dumps(row.request_headers, ensure_ascii=False), row.response_body, row.error]
        for secret in secrets:
            assert not any(secret in text for text in stored), f"secret found in call #{row.pk}"


# --- the request on the wire ---------------------------------------------------------------


@responses.activate
def test_the_request_on_the_wire_matches_the_recorded_fixture(best_settings):
    responses.post(ENDPOINT, body=fixture_text("recharge_refund_success.json"))

    fixed_client().recharge_refund(recharge(), client_reference="FT-0001")

    sent = responses.calls[0].request
    wire = {
        "method": sent.method,
        "url": sent.url,
        "headers": {name: sent.headers[name] for name in ("Content-Type", "Accept", "Content-Length")},
        "body": sent.body.decode("utf-8"),
    }
    recorded = FIXTURES / "recharge_refund_request.json"
    if os.environ.get("RECORD_PROVIDER_FIXTURES"):
        recorded.write_text(json.dumps(wire, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert wire == json.loads(recorded.read_text(encoding="utf-8"))


@responses.activate
def test_the_sign_on_the_wire_is_md5_of_the_sorted_fields_and_the_secret(best_settings):
    responses.post(ENDPOINT, body=fixture_text("recharge_refund_success.json"))

    fixed_client().recharge_refund(recharge())

    sent = responses.calls[0].request
    fields = form_fields(sent.body, sent.headers["Content-Type"])
    assert list(fields) == ["appId", "serviceType", "bizParam", "timestamp", "sign"]
    assert fields["appId"] == APP_ID
    assert fields["serviceType"] == "DISTRIBUTION_RECHARGE_REFUND"
    assert fields["timestamp"] == "1716190830123"  # milliseconds by default
    assert fields["bizParam"] == (
        '{"distributorCustomerName":"QY123456","distributorEnv":"DOMESTIC","type":"RECHARGE",'
        '"payChannel":"ALIPAY","distributorAccount":"6222000011112222",'
        '"transactionCompleteTime":"2024-05-20 15:40:30+08:00","totalPrice":100.50,'
        '"supplierAccount":"acct-001","remark":"五月充值"}'
    )
    expected = hashlib.md5(
        (
            f"appId={fields['appId']}bizParam={fields['bizParam']}serviceType={fields['serviceType']}"
            f"timestamp={fields['timestamp']}{APP_SECRET}"
        ).encode()
    ).hexdigest()
    assert fields["sign"] == expected


@responses.activate
def test_optional_fields_are_left_out_and_money_keeps_two_decimals(best_settings):
    responses.post(ENDPOINT, body=fixture_text("recharge_refund_success.json"))

    fixed_client().recharge_refund(
        RechargeRefund(
            distributor_customer_name="QY9",
            distributor_env="CROSSBORDER",
            transaction_type="REFUND",
            total_price=Decimal("7"),
        )
    )

    sent = responses.calls[0].request
    fields = form_fields(sent.body, sent.headers["Content-Type"])
    assert fields["bizParam"] == (
        '{"distributorCustomerName":"QY9","distributorEnv":"CROSSBORDER","type":"REFUND","totalPrice":7.00}'
    )


@responses.activate
def test_the_timestamp_unit_follows_the_setting(settings):
    settings.PROVIDERS = provider_accounts(
        {
            "BEST_GERP_BASE_URL": BASE_URL,
            "BEST_GERP_APP_ID": APP_ID,
            "BEST_GERP_APP_SECRET": APP_SECRET,
            "BEST_GERP_TIMESTAMP_UNIT": "s",
        }
    )
    responses.post(ENDPOINT, body=fixture_text("recharge_refund_success.json"))

    fixed_client().recharge_refund(recharge())

    sent = responses.calls[0].request
    assert form_fields(sent.body, sent.headers["Content-Type"])["timestamp"] == "1716190830"


def test_the_multipart_body_is_deterministic_under_a_fixed_nonce(best_settings):
    first = fixed_client().prepare_recharge_refund(recharge())
    second = fixed_client().prepare_recharge_refund(recharge())
    assert first.body == second.body
    assert first.headers["Content-Type"] == f"multipart/form-data; boundary=BestGerpBoundary{FIXED_NONCE}"


# --- outcomes --------------------------------------------------------------------------------


@responses.activate
def test_success_is_recorded_with_the_raw_answer(best_settings):
    responses.post(ENDPOINT, body=fixture_text("recharge_refund_success.json"))

    result = fixed_client().recharge_refund(recharge(), client_reference="FT-0001")

    assert result.outcome == Outcome.SUCCEEDED
    assert result.upstream_reference == "cdeac7da-54c8-4939-998e-c8316e82b196"
    assert result.client_reference == "FT-0001"
    assert result.data["bizContent"]["traceId"] == "4c4fede89f504d6b986df52fbd034da0"
    call = ProviderCall.objects.get()
    assert (call.provider, call.operation, call.outcome) == ("best_gerp", "recharge_refund", Outcome.SUCCEEDED)
    assert call.response_status == 200
    assert call.client_reference == "FT-0001"
    assert call.response_body == fixture_text("recharge_refund_success.json")
    assert json.loads(call.request_body)["appId"] == APP_ID
    assert_no_secret_stored(APP_SECRET)


@pytest.mark.parametrize(
    ("fixture", "code"),
    [("recharge_refund_data_input_error.json", "DATA_INPUT_ERROR"), ("recharge_refund_app_not_exist.json", "APP_NOT_EXIST")],
)
@responses.activate
def test_a_documented_error_code_is_a_rejection(best_settings, fixture, code):
    responses.post(ENDPOINT, body=fixture_text(fixture))

    with pytest.raises(ProviderRejected) as caught:
        fixed_client().recharge_refund(recharge(), client_reference="FT-0002")

    assert caught.value.code == code
    assert caught.value.message == json.loads(fixture_text(fixture))["errorMsg"]
    call = ProviderCall.objects.get()
    assert (call.outcome, call.upstream_code, call.response_status) == (Outcome.FAILED, code, 200)
    assert_no_secret_stored(APP_SECRET)


@pytest.mark.parametrize(
    "answer",
    [
        # an error code nobody documented
        {"state": "failure", "errorCode": "SYSTEM_BUSY", "errorMsg": "busy", "bizContent": None},
        # the envelope says success but bizContent does not
        {"state": "success", "errorCode": "", "bizContent": '{"notSuccess":true,"state":"failure"}'},
        # success without bizContent at all
        {"state": "success", "errorCode": "", "errorMsg": ""},
        # bizContent that is not JSON
        {"state": "success", "errorCode": "", "bizContent": "not json"},
        # notSuccess missing (only an explicit false counts)
        {"state": "success", "errorCode": "", "bizContent": '{"state":"success"}'},
        # success state with an error code
        {"state": "success", "errorCode": "WARN", "bizContent": '{"notSuccess":false,"state":"success"}'},
        # not an object
        ["success"],
    ],
)
@responses.activate
def test_an_answer_that_cannot_be_classified_is_unknown_never_success(best_settings, answer):
    responses.post(ENDPOINT, json=answer)

    with pytest.raises(OutcomeUnknown):
        fixed_client().recharge_refund(recharge())

    assert ProviderCall.objects.get().outcome == Outcome.UNKNOWN


@responses.activate
def test_connection_refused_means_nothing_was_sent(best_settings):
    responses.post(
        ENDPOINT,
        body=requests.exceptions.ConnectionError(
            NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
        ),
    )

    with pytest.raises(ProviderNotReached) as caught:
        fixed_client().recharge_refund(recharge())

    assert caught.value.retry_safe
    call = ProviderCall.objects.get()
    assert call.outcome == ""
    assert call.response_status is None
    assert "ProviderNotReached" in call.error
    assert_no_secret_stored(APP_SECRET)


@responses.activate
def test_a_read_timeout_is_unknown(best_settings):
    responses.post(ENDPOINT, body=requests.exceptions.ReadTimeout("Read timed out."))

    with pytest.raises(OutcomeUnknown):
        fixed_client().recharge_refund(recharge())

    call = ProviderCall.objects.get()
    assert call.outcome == Outcome.UNKNOWN
    assert "OutcomeUnknown" in call.error
    assert len(responses.calls) == 1


@responses.activate
def test_a_server_error_is_unknown(best_settings):
    responses.post(ENDPOINT, status=502, body="<html>Bad Gateway</html>")

    with pytest.raises(OutcomeUnknown):
        fixed_client().recharge_refund(recharge())

    call = ProviderCall.objects.get()
    assert (call.outcome, call.response_status, call.response_body) == (Outcome.UNKNOWN, 502, "<html>Bad Gateway</html>")


@responses.activate
def test_malformed_json_is_unknown(best_settings):
    responses.post(ENDPOINT, body='{"state": "success", ')

    with pytest.raises(OutcomeUnknown):
        fixed_client().recharge_refund(recharge())

    call = ProviderCall.objects.get()
    assert (call.outcome, call.response_status) == (Outcome.UNKNOWN, 200)


@responses.activate
def test_a_secret_echoed_by_the_upstream_is_not_stored(best_settings):
    responses.post(
        ENDPOINT,
        json={"state": "failure", "errorCode": "DATA_INPUT_ERROR", "errorMsg": f"bad secret {APP_SECRET}", "bizContent": None},
    )

    with pytest.raises(ProviderRejected):
        fixed_client().recharge_refund(recharge())

    assert_no_secret_stored(APP_SECRET)


@responses.activate
def test_the_call_row_survives_a_rolled_back_business_transaction(best_settings):
    responses.post(ENDPOINT, body=fixture_text("recharge_refund_success.json"))

    with pytest.raises(RuntimeError), transaction.atomic():
        fixed_client().recharge_refund(recharge(), client_reference="FT-0003")
        raise RuntimeError("the ledger write failed")

    assert ProviderCall.objects.get().client_reference == "FT-0003"


# --- bad input and configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"total_price": Decimal("0")}, "total_price"),
        ({"total_price": Decimal("-5.00")}, "total_price"),
        ({"total_price": Decimal("10.005")}, "total_price"),
        ({"total_price": 10.5}, "total_price"),
        ({"total_price": None}, "total_price"),
        ({"distributor_customer_name": ""}, "distributor_customer_name"),
        ({"distributor_customer_name": "   "}, "distributor_customer_name"),
        ({"distributor_env": "MARS"}, "distributor_env"),
        ({"distributor_env": None}, "distributor_env"),
        ({"transaction_type": "recharge"}, "transaction_type"),
        ({"pay_channel": "PAYPAL"}, "pay_channel"),
        ({"transaction_complete_time": datetime.datetime(2024, 5, 20, 15, 40, 30)}, "transaction_complete_time"),
        ({"transaction_complete_time": "2024-05-20 15:40:30+08:00"}, "transaction_complete_time"),
        ({"remark": 42}, "remark"),
    ],
)
@responses.activate
def test_bad_input_is_refused_before_anything_is_sent_or_recorded(best_settings, overrides, field):
    with pytest.raises(InvalidRequest) as caught:
        fixed_client().recharge_refund(recharge(**overrides))

    assert caught.value.field == field
    assert caught.value.message
    assert len(responses.calls) == 0
    assert ProviderCall.objects.count() == 0


@responses.activate
def test_a_client_reference_too_long_for_the_call_log_is_refused(best_settings):
    with pytest.raises(InvalidRequest) as caught:
        fixed_client().recharge_refund(recharge(), client_reference="R" * 65)

    assert caught.value.field == "client_reference"
    assert len(responses.calls) == 0
    assert ProviderCall.objects.count() == 0


def test_a_missing_secret_names_its_variable(settings):
    settings.PROVIDERS = provider_accounts({"BEST_GERP_BASE_URL": BASE_URL, "BEST_GERP_APP_ID": APP_ID})

    with pytest.raises(ProviderMisconfigured, match="BEST_GERP_APP_SECRET"):
        fixed_client().recharge_refund(recharge())

    assert ProviderCall.objects.count() == 0


def test_an_unknown_timestamp_unit_names_its_variable(settings):
    settings.PROVIDERS = provider_accounts(
        {
            "BEST_GERP_BASE_URL": BASE_URL,
            "BEST_GERP_APP_ID": APP_ID,
            "BEST_GERP_APP_SECRET": APP_SECRET,
            "BEST_GERP_TIMESTAMP_UNIT": "minutes",
        }
    )

    with pytest.raises(ProviderMisconfigured, match="BEST_GERP_TIMESTAMP_UNIT"):
        BestGerpSettings.for_account()


def test_a_second_merchant_account_reads_its_own_variables(settings):
    settings.PROVIDERS = provider_accounts(
        {
            "BEST_GERP_ACCOUNTS": "east",
            "BEST_GERP_EAST_BASE_URL": "https://www.qianyierp.com/",
            "BEST_GERP_EAST_APP_ID": "EAST",
            "BEST_GERP_EAST_APP_SECRET": "east-secret-123456",
        }
    )

    config = BestGerpSettings.for_account("east")

    assert config.endpoint == "https://www.qianyierp.com/api/v1/distribution"
    assert config.app_id == "EAST"


def test_the_secret_is_not_in_the_settings_repr(best_settings):
    assert APP_SECRET not in repr(BestGerpSettings.for_account())


# --- against the sandbox (real HTTP) -----------------------------------------------------


def unique_distributor() -> str:
    return f"QY{uuid.uuid4().hex[:10].upper()}"


@pytest.mark.sandbox
def test_sandbox_round_trip(sandbox, sandbox_environment):
    name = unique_distributor()

    result = BestGerpClient().recharge_refund(recharge(distributor_customer_name=name), client_reference="FT-RT")

    assert result.outcome == Outcome.SUCCEEDED
    [stored] = sandbox.vendor("best_gerp").records_for(name)
    assert stored["totalPrice"] == Decimal("100.50")
    assert stored["remark"] == "五月充值"
    assert stored["traceId"] == result.data["bizContent"]["traceId"]
    assert ProviderCall.objects.get().outcome == Outcome.SUCCEEDED
    assert_no_secret_stored(sandbox_environment["BEST_GERP_APP_SECRET"])


@pytest.mark.sandbox
def test_sandbox_refuses_a_bad_signature(sandbox, sandbox_environment, settings):
    # A second account with the right appId but the wrong secret: the sandbox checks the default one.
    settings.PROVIDERS = provider_accounts(
        {
            **sandbox_environment,
            "BEST_GERP_ACCOUNTS": "forged",
            "BEST_GERP_FORGED_BASE_URL": sandbox_environment["BEST_GERP_BASE_URL"],
            "BEST_GERP_FORGED_APP_ID": sandbox_environment["BEST_GERP_APP_ID"],
            "BEST_GERP_FORGED_APP_SECRET": "not-the-secret-0000",
        }
    )
    name = unique_distributor()

    with pytest.raises(ProviderRejected) as caught:
        BestGerpClient(merchant_account="forged").recharge_refund(recharge(distributor_customer_name=name))

    assert caught.value.code == "DATA_INPUT_ERROR"
    assert "signature" in caught.value.message
    assert sandbox.vendor("best_gerp").records_for(name) == []
    assert ProviderCall.objects.get().merchant_account == "forged"


@pytest.mark.sandbox
def test_sandbox_refuses_an_unknown_app(sandbox, sandbox_environment, settings):
    settings.PROVIDERS = provider_accounts(
        {
            **sandbox_environment,
            "BEST_GERP_ACCOUNTS": "stranger",
            "BEST_GERP_STRANGER_BASE_URL": sandbox_environment["BEST_GERP_BASE_URL"],
            "BEST_GERP_STRANGER_APP_ID": "NOSUCHAPP",
            "BEST_GERP_STRANGER_APP_SECRET": sandbox_environment["BEST_GERP_APP_SECRET"],
        }
    )

    with pytest.raises(ProviderRejected) as caught:
        BestGerpClient(merchant_account="stranger").recharge_refund(recharge(distributor_customer_name=unique_distributor()))

    assert caught.value.code == "APP_NOT_EXIST"


@pytest.mark.sandbox
def test_sandbox_refuses_a_stale_timestamp(sandbox):
    name = unique_distributor()
    six_minutes_ago = time.time() - 6 * 60

    with pytest.raises(ProviderRejected) as caught:
        BestGerpClient(clock=lambda: six_minutes_ago).recharge_refund(recharge(distributor_customer_name=name))

    assert caught.value.code == "DATA_INPUT_ERROR"
    assert "timestamp" in caught.value.message
    assert sandbox.vendor("best_gerp").records_for(name) == []


@pytest.mark.sandbox
def test_sandbox_timeout_is_unknown_and_not_resent(sandbox, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.5
    sandbox.add_fault(Fault(vendor="best_gerp", kind="timeout", operation="recharge_refund", delay_ms=1500))
    name = unique_distributor()

    with pytest.raises(OutcomeUnknown):
        BestGerpClient().recharge_refund(recharge(distributor_customer_name=name))

    vendor = sandbox.vendor("best_gerp")
    # The sandbox carried it out before holding the answer; the client sent it exactly once.
    assert len(vendor.received_for(name)) == 1
    assert len(vendor.records_for(name)) == 1
    assert ProviderCall.objects.get().outcome == Outcome.UNKNOWN


@pytest.mark.sandbox
def test_sandbox_injected_rejection_uses_the_vendor_shape(sandbox):
    sandbox.add_fault(Fault(vendor="best_gerp", kind="reject", code="APP_NOT_EXIST", message="The app does not exist"))

    with pytest.raises(ProviderRejected) as caught:
        BestGerpClient().recharge_refund(recharge(distributor_customer_name=unique_distributor()))

    assert (caught.value.code, caught.value.message) == ("APP_NOT_EXIST", "The app does not exist")
