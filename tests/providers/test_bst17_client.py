"""The 17bst client: what goes on the wire, how each status is read, that PINs and secrets stay out."""

from __future__ import annotations

import dataclasses
import json
import socket
from decimal import Decimal

import pytest
import requests
import responses

from config.provider_settings import provider_accounts
from providers.bst17 import signing
from providers.bst17.client import (
    Bst17Balance,
    Bst17Client,
    Bst17QueryTooFrequent,
    Bst17Settings,
    CardInfoQuery,
    EcouponPurchase,
    mask_card_pins,
)
from providers.exceptions import (
    Consequence,
    InvalidRequest,
    OutcomeUnknown,
    ProviderMisconfigured,
    ProviderNotReached,
    ProviderRejected,
    SignatureInvalid,
    consequence_of,
)
from providers.models import ProviderCall
from providers.results import Outcome
from tests.providers import bst17_support as support
from tests.providers.bst17_support import BASE_URL, assert_matches_fixture, environment, load, wire_of

pytestmark = pytest.mark.django_db(databases=["default", "call_log"])

PRODUCT_LIST_URL = BASE_URL + "/product/getProductList"
BALANCE_URL = BASE_URL + "/trade/queryAgtBalance"
ECOUPON_URL = BASE_URL + "/trade/ecoupon"
CARD_INFO_URL = BASE_URL + "/trade/getCardInfo"

# The clear PINs of the cards in the response fixtures (which hold them only encrypted).
FIXTURE_PINS = ["TESTPIN0001AAAA", "TESTPIN0002BBBB"]
STREAM_ID = "201605271125260035"


@pytest.fixture(autouse=True)
def bst17_account(settings):
    settings.PROVIDERS = provider_accounts(environment())


@pytest.fixture
def client() -> Bst17Client:
    return Bst17Client()


@pytest.fixture
def upstream():
    with responses.RequestsMock() as mock:
        yield mock


def buy(client: Bst17Client, quantity: int = 2):
    return client.ecoupon(EcouponPurchase(product_code="69", req_stream_id=STREAM_ID, quantity=quantity))


def answer(status: int, msg: str = "", **extra) -> dict:
    return {"data": None, "status": status, "throwable": None, "msg": msg, **extra}


def assert_nothing_secret_stored() -> None:
    stored = json.dumps(list(ProviderCall.objects.values()), default=str, ensure_ascii=False)
    for secret in [*support.secrets_of_test_account(), *FIXTURE_PINS]:
        assert secret not in stored
    for blob in (card["cardPwd"] for card in load("ecoupon_response_success.json")["data"]):
        assert blob not in stored


def sent_source(request) -> dict:
    envelope = json.loads(request.body)
    return json.loads(signing.des_decrypt(envelope["param"], support.APP_KEY))


# --- on the wire ----------------------------------------------------------------------------


def test_get_product_list_sends_the_recorded_request(client, upstream):
    upstream.post(PRODUCT_LIST_URL, json=load("product_list_response.json"))

    client.get_product_list()

    assert_matches_fixture(wire_of(upstream.calls[0].request), "product_list_request.json")
    assert sent_source(upstream.calls[0].request) == {"agtPhone": support.AGT_PHONE}


def test_query_balance_sends_the_recorded_request(client, upstream):
    upstream.post(BALANCE_URL, json=load("balance_response.json"))

    client.query_balance()

    assert_matches_fixture(wire_of(upstream.calls[0].request), "balance_request.json")


def test_ecoupon_sends_the_recorded_request_with_the_password_digest(client, upstream):
    upstream.post(ECOUPON_URL, json=load("ecoupon_response_success.json"))

    client.ecoupon(
        EcouponPurchase(
            product_code="69", req_stream_id=STREAM_ID, quantity=2, receive_url="xx@example.test",
            receive_phone="13800000000",
        )
    )

    assert_matches_fixture(wire_of(upstream.calls[0].request), "ecoupon_request.json")
    assert sent_source(upstream.calls[0].request) == {
        "agtPhone": support.AGT_PHONE,
        "productCode": 69,
        "reqStreamId": STREAM_ID,
        "amount": 2,
        "tradePwd": signing.trade_password_digest(support.TRADE_PASSWORD),
        "receiveUrl": "xx@example.test",
        "receivePhone": "13800000000",
    }


def test_get_card_info_sends_the_recorded_request(client, upstream):
    upstream.post(CARD_INFO_URL, json=load("card_info_response_success.json"))

    client.get_card_info(CardInfoQuery(req_stream_id=STREAM_ID))

    assert_matches_fixture(wire_of(upstream.calls[0].request), "card_info_request.json")


def test_the_stored_request_is_the_source_with_the_password_masked(client, upstream):
    upstream.post(ECOUPON_URL, json=load("ecoupon_response_success.json"))

    buy(client)

    stored = json.loads(ProviderCall.objects.get().request_body)
    assert stored == {
        "appId": support.APP_ID,
        "source": {"agtPhone": support.AGT_PHONE, "productCode": 69, "reqStreamId": STREAM_ID, "amount": 2, "tradePwd": "***"},
    }


# --- products and balance ---------------------------------------------------------------------


def test_the_product_list_is_typed_with_exact_amounts(client, upstream):
    upstream.post(PRODUCT_LIST_URL, json=load("product_list_response.json"))

    products = client.get_product_list()

    assert [p.code for p in products] == ["8", "12", "18"]
    first = products[0]
    assert (first.business_code, first.face_value, first.price, first.discount) == (
        "1", Decimal("500"), Decimal("500"), Decimal("96.89"),
    )
    assert (first.province, first.arrive_type, first.arrival) == ("广东", 1, "normal")


def test_the_balance_is_typed_with_exact_amounts(client, upstream):
    upstream.post(BALANCE_URL, json=load("balance_response.json"))

    assert client.query_balance() == Bst17Balance(credit=Decimal("917.279"), freeze=Decimal("210"), profit=Decimal("10.2"))


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (1004, ProviderRejected), (1013, ProviderRejected), (1017, Bst17QueryTooFrequent), (1003, OutcomeUnknown),
        (4242, OutcomeUnknown),
    ],
)
def test_a_balance_query_that_does_not_succeed_raises(client, upstream, status, error):
    upstream.post(BALANCE_URL, json=answer(status, "no"))

    with pytest.raises(error):
        client.query_balance()


# --- buying cards -----------------------------------------------------------------------------


def test_a_successful_purchase_gives_the_decrypted_cards(client, upstream):
    upstream.post(ECOUPON_URL, json=load("ecoupon_response_success.json"))

    result = buy(client)

    assert result.outcome == Outcome.SUCCEEDED
    assert (result.code, result.upstream_reference, result.client_reference) == ("1000", "0000000000294930", STREAM_ID)
    assert [card.pin for card in result.card_secrets] == FIXTURE_PINS
    assert [card.card_number for card in result.card_secrets] == ["8600000000000001", "8600000000000002"]
    assert str(result.card_secrets[0].expires_at) == "2025-05-31"
    assert all(pin not in repr(result) for pin in FIXTURE_PINS)
    assert "***" in json.dumps(result.data)
    call = ProviderCall.objects.get()
    assert call.outcome == Outcome.SUCCEEDED and call.client_reference == STREAM_ID
    assert '"cardPwd": "***"' in call.response_body
    assert_nothing_secret_stored()


def test_success_without_cards_waits_for_them(client, upstream):
    upstream.post(ECOUPON_URL, json=load("ecoupon_response_waiting_callback.json"))

    result = buy(client)

    assert result.outcome == Outcome.ACCEPTED
    assert result.card_secrets == ()


def test_fewer_cards_than_bought_is_unknown_but_keeps_the_cards(client, upstream):
    upstream.post(ECOUPON_URL, json=load("ecoupon_response_success.json"))

    result = buy(client, quantity=3)

    assert result.outcome == Outcome.UNKNOWN
    assert len(result.card_secrets) == 2


@pytest.mark.parametrize("status", [1001, 1004, 1010, 1013, 1016])
def test_a_definite_refusal_of_a_purchase_raises_with_the_code(client, upstream, status):
    upstream.post(ECOUPON_URL, json=answer(status, "拒绝", reqStreamId=STREAM_ID))

    with pytest.raises(ProviderRejected) as caught:
        buy(client)

    assert caught.value.code == str(status)
    assert caught.value.message == "拒绝"
    assert ProviderCall.objects.get().upstream_code == str(status)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (1003, Outcome.UNKNOWN), (1011, Outcome.ACCEPTED), (1015, Outcome.UNKNOWN), (1017, Outcome.UNKNOWN),
        (1018, Outcome.FAILED), (9999, Outcome.UNKNOWN), ("abc", Outcome.UNKNOWN),
    ],
)
def test_other_purchase_statuses_map_through_the_one_table(client, upstream, status, outcome):
    upstream.post(ECOUPON_URL, json=answer(status, reqStreamId=STREAM_ID))

    assert buy(client).outcome == outcome


def test_an_unknown_status_never_succeeds_even_with_cards(client, upstream):
    body = load("ecoupon_response_success.json")
    body["status"] = 1999
    upstream.post(ECOUPON_URL, json=body)

    result = buy(client)

    assert result.outcome == Outcome.UNKNOWN
    assert result.card_secrets == ()


OPERATIONS = {
    "getProductList": (PRODUCT_LIST_URL, lambda client: client.get_product_list()),
    "queryAgtBalance": (BALANCE_URL, lambda client: client.query_balance()),
    "ecoupon": (ECOUPON_URL, lambda client: buy(client)),
    "getCardInfo": (CARD_INFO_URL, lambda client: client.get_card_info(CardInfoQuery(req_stream_id=STREAM_ID))),
}
LOST_OR_UNREADABLE = {
    "read timeout": {"body": requests.exceptions.ReadTimeout("read timed out")},
    "5xx": {"status": 503, "body": "Service Unavailable"},
    "malformed": {"status": 200, "body": '{"data": [{"cardNum": "1", "cardPwd": "abc"'},
    "not the envelope": {"status": 200, "json": {"unexpected": True}},
}


@pytest.mark.parametrize("reply", LOST_OR_UNREADABLE.values(), ids=LOST_OR_UNREADABLE.keys())
@pytest.mark.parametrize("operation", OPERATIONS.keys())
def test_an_answer_that_is_lost_or_unreadable_is_unknown_and_not_resent(client, upstream, operation, reply):
    url, call = OPERATIONS[operation]
    upstream.post(url, **reply)

    with pytest.raises(OutcomeUnknown):
        call(client)

    assert len(upstream.calls) == 1
    assert ProviderCall.objects.get().outcome == Outcome.UNKNOWN
    assert_nothing_secret_stored()


@pytest.mark.parametrize("operation", ["ecoupon", "getCardInfo"])
def test_an_answer_about_another_order_is_unknown(client, upstream, operation):
    url, call = OPERATIONS[operation]
    upstream.post(url, json=answer(1000, reqStreamId="another"))

    with pytest.raises(OutcomeUnknown):
        call(client)


@pytest.mark.parametrize("operation", OPERATIONS.keys())
def test_a_call_that_cannot_connect_was_not_sent(settings, operation):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.PROVIDERS = provider_accounts(environment(BST17_BASE_URL=f"http://127.0.0.1:{closed_port}/charge-api"))

    with pytest.raises(ProviderNotReached):
        OPERATIONS[operation][1](Bst17Client())

    assert ProviderCall.objects.get().outcome == ""


def test_cards_that_do_not_decrypt_name_the_card_key_and_keep_no_pin(settings, upstream):
    settings.PROVIDERS = provider_accounts(environment(BST17_CARD_KEY="AnotherKey123"))
    upstream.post(ECOUPON_URL, json=load("ecoupon_response_success.json"))

    with pytest.raises(ProviderMisconfigured, match="BST17_CARD_KEY"):
        buy(Bst17Client())

    assert ProviderCall.objects.get().outcome == Outcome.UNKNOWN
    assert_nothing_secret_stored()


def test_the_card_key_defaults_to_the_app_key(settings, upstream):
    settings.PROVIDERS = provider_accounts(environment(BST17_CARD_KEY=""))
    body = load("ecoupon_response_success.json")
    for card, pin in zip(body["data"], FIXTURE_PINS, strict=True):
        card["cardPwd"] = signing.des_encrypt(pin, support.APP_KEY)
    upstream.post(ECOUPON_URL, json=body)

    assert [card.pin for card in buy(Bst17Client()).card_secrets] == FIXTURE_PINS


# --- querying cards ---------------------------------------------------------------------------


def test_card_info_of_a_finished_order_gives_its_cards(client, upstream):
    upstream.post(CARD_INFO_URL, json=load("card_info_response_success.json"))

    result = client.get_card_info(CardInfoQuery(req_stream_id=STREAM_ID))

    assert result.outcome == Outcome.SUCCEEDED
    assert [card.pin for card in result.card_secrets] == FIXTURE_PINS
    assert_nothing_secret_stored()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (1001, Outcome.FAILED), (1003, Outcome.UNKNOWN), (1011, Outcome.ACCEPTED), (1015, Outcome.ACCEPTED),
        (1018, Outcome.FAILED), (7777, Outcome.UNKNOWN),
    ],
)
def test_card_info_statuses_map_to_the_order_state(client, upstream, status, outcome):
    upstream.post(CARD_INFO_URL, json=answer(status, reqStreamId=STREAM_ID))

    assert client.get_card_info(CardInfoQuery(req_stream_id=STREAM_ID)).outcome == outcome


def test_card_info_queried_too_often_raises_something_to_back_off_on(client, upstream):
    upstream.post(CARD_INFO_URL, json=answer(1017, "查询过于频繁"))

    with pytest.raises(Bst17QueryTooFrequent) as caught:
        client.get_card_info(CardInfoQuery(req_stream_id=STREAM_ID))

    assert caught.value.code == "1017"
    assert caught.value.retry_safe


@pytest.mark.parametrize("status", [1004, 1013])
def test_card_info_refused_raises(client, upstream, status):
    upstream.post(CARD_INFO_URL, json=answer(status))

    with pytest.raises(ProviderRejected):
        client.get_card_info(CardInfoQuery(req_stream_id=STREAM_ID))


# --- our own bad input ------------------------------------------------------------------------


def purchase_with(**changes) -> EcouponPurchase:
    return EcouponPurchase(**{"product_code": "69", "req_stream_id": STREAM_ID, "quantity": 2, **changes})


@pytest.fixture
def answering_upstream():
    """Every endpoint answers with success, so a request that went out would be seen, not fail on its own."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(ECOUPON_URL, json=load("ecoupon_response_success.json"))
        mock.post(CARD_INFO_URL, json=load("card_info_response_success.json"))
        yield mock


BAD_REQUESTS = {
    "no product code": (lambda c: c.ecoupon(purchase_with(product_code="")), "product_code"),
    "product code not a number": (lambda c: c.ecoupon(purchase_with(product_code="abc")), "product_code"),
    # isdigit() takes these, and int() reads the first as 69 and refuses the second with a ValueError.
    "product code in other digits": (lambda c: c.ecoupon(purchase_with(product_code="٦٩")), "product_code"),
    "product code a superscript": (lambda c: c.ecoupon(purchase_with(product_code="²")), "product_code"),
    "product code too long": (lambda c: c.ecoupon(purchase_with(product_code="1" * 19)), "product_code"),
    "product code a float": (lambda c: c.ecoupon(purchase_with(product_code=6.9)), "product_code"),
    "no stream id": (lambda c: c.ecoupon(purchase_with(req_stream_id="")), "req_stream_id"),
    "stream id too long": (lambda c: c.ecoupon(purchase_with(req_stream_id="r" * 33)), "req_stream_id"),
    "stream id a number": (lambda c: c.ecoupon(purchase_with(req_stream_id=12345)), "req_stream_id"),
    "no cards": (lambda c: c.ecoupon(purchase_with(quantity=0)), "quantity"),
    "quantity a bool": (lambda c: c.ecoupon(purchase_with(quantity=True)), "quantity"),
    "quantity text": (lambda c: c.ecoupon(purchase_with(quantity="2")), "quantity"),
    "callback address too long": (lambda c: c.ecoupon(purchase_with(receive_url="x" * 256)), "receive_url"),
    "receiving phone too long": (lambda c: c.ecoupon(purchase_with(receive_phone="1" * 21)), "receive_phone"),
    "card query, blank stream id": (lambda c: c.get_card_info(CardInfoQuery(req_stream_id=" ")), "req_stream_id"),
    "card query, stream id too long": (
        lambda c: c.get_card_info(CardInfoQuery(req_stream_id="r" * 33)), "req_stream_id"
    ),
}


@pytest.mark.parametrize(("call", "field"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_field_is_refused_naming_it_before_anything_is_sent_or_recorded(client, answering_upstream, call, field):
    with pytest.raises(InvalidRequest) as caught:
        call(client)

    assert caught.value.field == field
    assert caught.value.message
    assert consequence_of(caught.value) is Consequence.NOT_CARRIED_OUT
    for secret in support.secrets_of_test_account():
        assert secret not in str(caught.value)
    assert len(answering_upstream.calls) == 0
    assert ProviderCall.objects.count() == 0


def test_a_purchase_is_checked_and_trimmed_once_and_cannot_be_changed_afterwards():
    purchase = purchase_with(product_code=" 69 ", req_stream_id=f" {STREAM_ID} ", receive_url=None)

    assert (purchase.product_code, purchase.req_stream_id, purchase.receive_url) == (69, STREAM_ID, "")
    assert purchase_with(product_code=69) == purchase
    with pytest.raises(dataclasses.FrozenInstanceError):
        purchase.quantity = 0  # type: ignore[misc]


# --- callbacks --------------------------------------------------------------------------------


def signed_callback(state: str = "0", **changes) -> dict:
    payload = {"agtPhone": support.AGT_PHONE, "reqStreamId": STREAM_ID, "state": state}
    payload["sign"] = signing.callback_sign(support.AGT_PHONE, STREAM_ID, state, support.APP_KEY)
    return {**payload, **changes}


@pytest.mark.parametrize(("state", "outcome"), [("0", Outcome.SUCCEEDED), ("1", Outcome.FAILED), ("7", Outcome.UNKNOWN)])
def test_a_signed_callback_gives_the_order_state(client, state, outcome):
    callback = client.verify_callback(signed_callback(state))

    assert (callback.req_stream_id, callback.status, callback.state) == (STREAM_ID, outcome, state)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(signed_callback(state="1", sign=signed_callback("0")["sign"]), id="state changed"),
        pytest.param(signed_callback(sign="0" * 32), id="wrong signature"),
        pytest.param({k: v for k, v in signed_callback().items() if k != "sign"}, id="no signature"),
        pytest.param(
            {"agtPhone": "13000000000", "reqStreamId": STREAM_ID, "state": "0",
             "sign": signing.callback_sign("13000000000", STREAM_ID, "0", support.APP_KEY)},
            id="another agent",
        ),
    ],
)
def test_a_callback_that_does_not_verify_is_refused(client, payload):
    with pytest.raises(SignatureInvalid):
        client.verify_callback(payload)


def test_a_callback_is_read_as_the_account_its_agent_phone_names(settings):
    settings.PROVIDERS = provider_accounts(environment(
        BST17_ACCOUNTS="second", BST17_SECOND_BASE_URL=BASE_URL, BST17_SECOND_APP_ID="app2",
        BST17_SECOND_APP_KEY="S3condAppK3y0042", BST17_SECOND_AGT_PHONE="13912345678",
        BST17_SECOND_TRADE_PASSWORD="pw2",
    ))
    payload = {"agtPhone": "13912345678", "reqStreamId": STREAM_ID, "state": "1",
               "sign": signing.callback_sign("13912345678", STREAM_ID, "1", "S3condAppK3y0042")}

    client = Bst17Client.for_callback(payload)
    callback = client.verify_callback(payload)

    assert client.merchant_account == callback.merchant_account == "second"
    assert Bst17Client.for_callback(signed_callback()).merchant_account == "default"
    with pytest.raises(SignatureInvalid):
        Bst17Client.for_callback({**payload, "agtPhone": "13000000000"})
    with pytest.raises(SignatureInvalid):  # the default account's key does not sign for the second
        client.verify_callback({**payload, "sign": signing.callback_sign("13912345678", STREAM_ID, "1", support.APP_KEY)})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"agtPhone": support.AGT_PHONE + " "}, "agtPhone", id="agtPhone with a space"),
        pytest.param({"reqStreamId": STREAM_ID + "&x"}, "reqStreamId", id="reqStreamId with &"),
        pytest.param({"reqStreamId": ""}, "reqStreamId", id="reqStreamId missing"),
        pytest.param({"state": "0 "}, "state", id="state with a space"),
        pytest.param({"sign": "g" * 32}, "sign", id="sign not hex"),
    ],
)
def test_a_callback_field_outside_its_shape_is_refused(client, changes, field):
    with pytest.raises(InvalidRequest) as caught:
        client.verify_callback(signed_callback(**changes))

    assert caught.value.field == field


# --- settings and redaction -------------------------------------------------------------------


def test_a_missing_credential_names_its_environment_variable(settings):
    settings.PROVIDERS = provider_accounts(environment(BST17_TRADE_PASSWORD=""))

    client = Bst17Client()  # made without reading the settings: the call that needs them fails

    with pytest.raises(ProviderMisconfigured, match="BST17_TRADE_PASSWORD") as caught:
        buy(client)
    assert consequence_of(caught.value) is Consequence.NOT_CARRIED_OUT  # raised before anything was sent
    assert not ProviderCall.objects.exists()


def test_an_app_key_shorter_than_a_des_key_names_its_variable(settings):
    settings.PROVIDERS = provider_accounts(environment(BST17_APP_KEY="short", BST17_CARD_KEY=""))

    with pytest.raises(ProviderMisconfigured, match="BST17_APP_KEY"):
        Bst17Client().query_balance()


def test_settings_hide_secrets_from_repr():
    text = repr(Bst17Settings.for_account())

    for secret in support.secrets_of_test_account():
        assert secret not in text


def test_card_pins_are_masked_even_in_a_broken_answer():
    assert mask_card_pins('{"cardPwd":"abc\\"d", "cardPwd" : xyz}') == '{"cardPwd":"***", "cardPwd" : "***"}'
