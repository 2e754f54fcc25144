"""End to end over real HTTP: the 17bst client against its sandbox, callback included."""

from __future__ import annotations

import dataclasses
import json
import uuid
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest

from config.provider_settings import provider_accounts
from providers.bst17.client import Bst17Client, Bst17QueryTooFrequent, CardInfoQuery, EcouponPurchase
from providers.exceptions import OutcomeUnknown, ProviderRejected
from providers.models import ProviderCall
from providers.results import Outcome
from providers.sandbox.server import Fault
from tests.providers.callback_receiver import CallbackReceiver, wait_until

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db(databases=["default", "call_log"])]


@pytest.fixture
def platform(sandbox):
    return sandbox.vendor("bst17")


def new_stream_id() -> str:
    return uuid.uuid4().hex[:20]


def issued_pins(platform, stream_id: str) -> list[str]:
    return [card["pin"] for card in platform.orders[stream_id]["cards"]]


def test_the_product_list_round_trips(platform):
    products = Bst17Client().get_product_list()

    by_code = {product.code: product for product in products}
    assert by_code["69"].face_value == Decimal("30")
    assert by_code["18"].discount == Decimal("89.56")


def test_a_purchase_gives_the_issued_cards_and_lowers_the_balance(platform):
    client = Bst17Client()
    before = client.query_balance().credit
    stream_id = new_stream_id()

    result = client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=2))

    assert result.outcome == Outcome.SUCCEEDED
    assert [card.pin for card in result.card_secrets] == issued_pins(platform, stream_id)
    assert client.query_balance().credit == before - Decimal("54.000")  # 2 x 30 at 90 %
    queried = client.get_card_info(CardInfoQuery(req_stream_id=stream_id))
    assert queried.outcome == Outcome.SUCCEEDED
    assert [card.card_number for card in queried.card_secrets] == [card.card_number for card in result.card_secrets]


def test_the_call_log_holds_no_pin_and_no_secret(platform, sandbox_environment):
    client = Bst17Client()
    stream_id = new_stream_id()
    client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=3))
    client.get_card_info(CardInfoQuery(req_stream_id=stream_id))

    stored = json.dumps(list(ProviderCall.objects.values()), default=str, ensure_ascii=False)
    for secret in [*issued_pins(platform, stream_id), sandbox_environment["BST17_APP_KEY"],
                   sandbox_environment["BST17_TRADE_PASSWORD"], sandbox_environment["BST17_CARD_KEY"],
                   Bst17Client().config.trade_password_digest]:
        assert secret not in stored


def test_a_processing_order_completes_later_and_calls_back(platform, monkeypatch):
    monkeypatch.setattr(platform, "answer_processing_first", True)
    monkeypatch.setattr(platform, "send_callbacks", True)
    monkeypatch.setattr(platform, "completion_delay", 0.05)
    client = Bst17Client()
    stream_id = new_stream_id()

    with CallbackReceiver(default=(200, "success")) as receiver:
        result = client.ecoupon(EcouponPurchase(product_code="12", req_stream_id=stream_id, quantity=1, receive_url=receiver.url))
        received = receiver.wait_for(1)[0]

    assert result.outcome == Outcome.ACCEPTED
    callback = client.verify_callback(dict(parse_qsl(received.body.decode("utf-8"))))
    assert (callback.req_stream_id, callback.status) == (stream_id, Outcome.SUCCEEDED)
    cards = client.get_card_info(CardInfoQuery(req_stream_id=stream_id))
    assert cards.outcome == Outcome.SUCCEEDED
    assert [card.pin for card in cards.card_secrets] == issued_pins(platform, stream_id)


def test_an_order_not_yet_visible_is_pending(platform):
    assert Bst17Client().get_card_info(CardInfoQuery(req_stream_id=new_stream_id())).outcome == Outcome.ACCEPTED


def test_a_reused_req_stream_id_is_refused(platform):
    client = Bst17Client()
    stream_id = new_stream_id()
    client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=1))

    with pytest.raises(ProviderRejected) as caught:
        client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=1))

    assert caught.value.code == "1016"
    assert len(platform.orders[stream_id]["cards"]) == 1


def test_a_wrong_trade_password_is_refused(platform):
    client = Bst17Client()
    client.config = dataclasses.replace(client.config, trade_password="not-the-password")
    stream_id = new_stream_id()

    with pytest.raises(ProviderRejected) as caught:
        client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=1))

    assert caught.value.code == "1004"
    assert stream_id not in platform.orders


def test_a_param_encrypted_with_the_wrong_key_creates_nothing(platform):
    client = Bst17Client()
    client.config = dataclasses.replace(client.config, app_key="WrongKey12345678")
    stream_id = new_stream_id()

    result = client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=1))

    assert (result.outcome, result.code) == (Outcome.UNKNOWN, "1003")
    assert stream_id not in platform.orders


def test_insufficient_balance_is_refused(platform, monkeypatch):
    monkeypatch.setattr(platform, "credit", Decimal("1.000"))

    with pytest.raises(ProviderRejected) as caught:
        Bst17Client().ecoupon(EcouponPurchase(product_code="8", req_stream_id=new_stream_id(), quantity=1))

    assert caught.value.code == "1010"


def test_querying_too_often_raises_something_to_back_off_on(platform, monkeypatch):
    monkeypatch.setattr(platform, "min_query_interval", 60.0)
    client = Bst17Client()
    stream_id = new_stream_id()
    client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=1))
    client.get_card_info(CardInfoQuery(req_stream_id=stream_id))

    with pytest.raises(Bst17QueryTooFrequent):
        client.get_card_info(CardInfoQuery(req_stream_id=stream_id))


def test_a_timeout_is_unknown_never_resent_and_the_order_can_be_queried(platform, sandbox, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    sandbox.add_fault(Fault(vendor="bst17", kind="timeout", operation="ecoupon", delay_ms=1500))
    client = Bst17Client()
    stream_id = new_stream_id()

    with pytest.raises(OutcomeUnknown):
        client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=1))

    assert platform.ecoupon_requests[stream_id] == 1
    assert len(platform.orders[stream_id]["cards"]) == 1
    settings.PROVIDER_READ_TIMEOUT = 5
    assert client.get_card_info(CardInfoQuery(req_stream_id=stream_id)).outcome == Outcome.SUCCEEDED


def test_an_injected_rejection_uses_the_vendor_shape(platform, sandbox):
    sandbox.add_fault(Fault(vendor="bst17", kind="reject", operation="ecoupon", code="1001", message="交易失败"))

    with pytest.raises(ProviderRejected) as caught:
        Bst17Client().ecoupon(EcouponPurchase(product_code="69", req_stream_id=new_stream_id(), quantity=1))

    assert (caught.value.code, caught.value.message) == ("1001", "交易失败")


def test_a_callback_to_the_configured_url_when_receive_url_is_an_email(platform, sandbox_environment, settings, monkeypatch):
    monkeypatch.setattr(platform, "send_callbacks", True)
    monkeypatch.setattr(platform, "completion_delay", 0.05)
    with CallbackReceiver(default=(200, "success")) as receiver:
        settings.PROVIDERS = provider_accounts({**sandbox_environment, "BST17_CALLBACK_URL": receiver.url})
        client = Bst17Client()
        stream_id = new_stream_id()
        client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=stream_id, quantity=1, receive_url="cards@example.test"))
        received = receiver.wait_for(1)[0]

    assert client.verify_callback(dict(parse_qsl(received.body.decode()))).req_stream_id == stream_id
    wait_until(lambda: any(a["delivered"] for a in platform.callback_attempts if a["reqStreamId"] == stream_id))
