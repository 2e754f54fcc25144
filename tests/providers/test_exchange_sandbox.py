"""End to end over real HTTP: the redemption platform client against its sandbox, callbacks included."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

import pytest
import requests

from config.provider_settings import provider_accounts
from providers.exceptions import OutcomeUnknown, ProviderRejected
from providers.exchange.client import BatchCharge, BatchItem, ExchangeClient, OrderInfoQuery, VipCharge
from providers.models import ProviderCall
from providers.results import Outcome
from providers.sandbox.server import Fault
from tests.providers.callback_receiver import CallbackReceiver, wait_until
from tests.providers.exchange_support import MERCHANT_PRIVATE_KEY

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db(databases=["default", "call_log"])]


@pytest.fixture
def receiver():
    with CallbackReceiver() as callback_receiver:
        yield callback_receiver


@pytest.fixture
def platform(sandbox, sandbox_environment, settings, receiver, monkeypatch):
    """The exchange sandbox, with fast callbacks sent to the local receiver."""
    settings.PROVIDERS = provider_accounts({**sandbox_environment, "EXCHANGE_CALLBACK_URL": receiver.url})
    vendor = sandbox.vendor("exchange")
    monkeypatch.setattr(vendor, "callback_delay", 0.05)
    monkeypatch.setattr(vendor, "callback_retry_delays", (0.05, 0.1, 0.2))
    return vendor


def new_code(prefix: str = "BO") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def test_a_vip_charge_is_accepted_then_confirmed_by_a_signed_callback(platform, receiver):
    client = ExchangeClient()
    biz_code = new_code()

    result = client.vip_charge(VipCharge(product_code="87103", mobile="15012616978", account="w23b52", biz_code=biz_code))

    assert result.outcome == Outcome.ACCEPTED
    assert result.upstream_reference
    callback = client.verify_callback(*as_received(receiver.wait_for(1)[0]))
    assert (callback.biz_code, callback.order_code, callback.status) == (biz_code, result.upstream_reference, Outcome.SUCCEEDED)
    assert callback.settlement_price == result.settlement_price
    assert client.order_info(OrderInfoQuery(biz_code=biz_code)).outcome == Outcome.SUCCEEDED


def test_a_charge_that_fails_upstream_is_reported_failed(platform, receiver):
    client = ExchangeClient()
    biz_code = new_code()

    client.vip_charge(VipCharge(product_code="87103", mobile=None, account="fail-w23b52", biz_code=biz_code))

    callback = client.verify_callback(*as_received(receiver.wait_for(1)[0]))
    assert callback.status == Outcome.FAILED
    assert client.order_info(OrderInfoQuery(biz_code=biz_code)).outcome == Outcome.FAILED


def test_the_callback_is_retried_until_the_receiver_answers_success(platform, receiver):
    receiver.answers = [(500, "busy"), (200, "not yet")]
    client = ExchangeClient()
    biz_code = new_code()

    client.vip_charge(VipCharge(product_code="87103", mobile=None, account="w23b52", biz_code=biz_code))

    received = receiver.wait_for(3)
    assert {client.verify_callback(*as_received(item)).biz_code for item in received} == {biz_code}
    wait_until(lambda: platform.orders[biz_code]["callbackDelivered"])


def test_order_info_tells_a_processing_order_before_its_callback(platform, monkeypatch):
    monkeypatch.setattr(platform, "callback_delay", 5.0)
    client = ExchangeClient()
    biz_code = new_code()
    client.vip_charge(VipCharge(product_code="87104", mobile=None, account="w23b52", biz_code=biz_code))

    assert client.order_info(OrderInfoQuery(biz_code=biz_code)).outcome == Outcome.ACCEPTED


def test_a_batch_is_accepted_per_line_and_each_line_is_called_back(platform, receiver):
    client = ExchangeClient()
    codes = [new_code(), new_code()]

    result = client.batch_charge(BatchCharge(
        batch_biz_code=new_code("BATCH"), product_code="54092",
        items=[BatchItem(biz_code=codes[0], account="acc-1"), BatchItem(biz_code=codes[1], account="acc-2", attach_values="x")],
    ))

    assert [(item.client_reference, item.outcome) for item in result.items] == [(code, Outcome.ACCEPTED) for code in codes]
    callbacks = [client.verify_callback(*as_received(item)) for item in receiver.wait_for(2)]
    assert sorted(callback.biz_code for callback in callbacks) == sorted(codes)
    assert all(callback.status == Outcome.SUCCEEDED for callback in callbacks)


def test_an_md5_account_round_trips(sandbox_environment, platform, settings, receiver):
    settings.PROVIDERS = provider_accounts(
        {**sandbox_environment, "EXCHANGE_CALLBACK_URL": receiver.url, "EXCHANGE_SIGN_TYPE": "MD5"}
    )
    client = ExchangeClient()
    biz_code = new_code()

    result = client.vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=biz_code))
    assert result.outcome == Outcome.ACCEPTED
    assert client.verify_callback(*as_received(receiver.wait_for(1)[0])).status == Outcome.SUCCEEDED


def test_an_unknown_order_is_refused_by_order_info(platform):
    with pytest.raises(ProviderRejected) as caught:
        ExchangeClient().order_info(OrderInfoQuery(biz_code=new_code()))

    assert caught.value.code == "404"


def test_a_bad_signature_is_refused(platform):
    client = ExchangeClient()
    client.config = dataclasses.replace(client.config, private_key_pem=MERCHANT_PRIVATE_KEY)  # not the account's key
    biz_code = new_code()

    with pytest.raises(ProviderRejected) as caught:
        client.vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=biz_code))

    assert caught.value.code == "401"
    assert biz_code not in platform.orders


def test_a_body_changed_after_signing_is_refused(platform):
    client = ExchangeClient()
    request = client._prepare("VIPCharge", "/v1/openapi/order/VIPCharge", {"merchantId": client.config.merchant_id})
    tampered = request.body.replace(b"}", b',"account":"x"}')

    answer = requests.post(request.url, data=tampered, headers=request.headers, timeout=5).json()

    assert answer == {"status": 401, "message": "签名错误", "data": None}


def test_a_stale_timestamp_is_refused(platform):
    client = ExchangeClient(clock=lambda: time.time() - 6 * 60)

    with pytest.raises(ProviderRejected) as caught:
        client.vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=new_code()))

    assert caught.value.code == "402"


def test_a_reused_nonce_is_refused(platform):
    nonce = uuid.uuid4().hex
    client = ExchangeClient(nonce=lambda: nonce)
    client.vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=new_code()))
    second = new_code()

    with pytest.raises(ProviderRejected) as caught:
        client.vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=second))

    assert caught.value.code == "403"
    assert second not in platform.orders


def test_a_reused_biz_code_is_refused(platform):
    client = ExchangeClient()
    biz_code = new_code()
    client.vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=biz_code))

    with pytest.raises(ProviderRejected) as caught:
        client.vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=biz_code))

    assert caught.value.code == "409"


def test_an_injected_rejection_uses_the_platform_error_shape(platform, sandbox):
    sandbox.add_fault(Fault(vendor="exchange", kind="reject", operation="VIPCharge", code="429", message="限流"))

    with pytest.raises(ProviderRejected) as caught:
        ExchangeClient().vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=new_code()))

    assert (caught.value.code, caught.value.message) == ("429", "限流")


def test_a_timeout_is_unknown_and_never_resent(platform, sandbox, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    sandbox.add_fault(Fault(vendor="exchange", kind="timeout", operation="VIPCharge", delay_ms=1500))
    biz_code = new_code()

    with pytest.raises(OutcomeUnknown):
        ExchangeClient().vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=biz_code))

    assert platform.charge_requests[biz_code] == 1
    assert biz_code in platform.orders
    assert ProviderCall.objects.get(client_reference=biz_code).outcome == Outcome.UNKNOWN


def test_the_call_log_holds_no_key(platform, sandbox_environment):
    client = ExchangeClient()
    client.vip_charge(VipCharge(product_code="87103", mobile=None, account="a", biz_code=new_code()))

    stored = json.dumps(list(ProviderCall.objects.values()), default=str)
    assert "PRIVATE KEY" not in stored
    assert sandbox_environment["EXCHANGE_MD5_KEY"] not in stored


def as_received(item) -> tuple[dict[str, str], bytes]:
    return item.headers, item.body
