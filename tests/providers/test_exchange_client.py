"""The redemption platform client: what goes on the wire, how each answer is read, what is stored."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
from decimal import Decimal

import pytest
import requests
import responses

from config.provider_settings import provider_accounts
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
from providers.exchange.client import (
    BatchCharge,
    BatchItem,
    ExchangeClient,
    ExchangeSettings,
    OrderInfoQuery,
    VipCharge,
)
from providers.models import ProviderCall
from providers.results import Outcome
from tests.providers import exchange_support as support
from tests.providers.exchange_support import (
    BASE_URL,
    FIXED_NONCE,
    FIXED_TIME,
    assert_matches_fixture,
    callback_headers,
    environment,
    load,
    wire_of,
)

pytestmark = pytest.mark.django_db(databases=["default", "call_log"])

VIP_CHARGE_URL = BASE_URL + "/v1/openapi/order/VIPCharge"
BATCH_URL = BASE_URL + "/v1/openapi/order/batch"
INFO_URL = BASE_URL + "/v1/openapi/order/info"


@pytest.fixture(autouse=True)
def exchange_account(settings):
    settings.PROVIDERS = provider_accounts(environment())


@pytest.fixture
def client() -> ExchangeClient:
    return ExchangeClient(clock=lambda: FIXED_TIME, nonce=lambda: FIXED_NONCE)


@pytest.fixture
def upstream():
    with responses.RequestsMock() as mock:
        yield mock


def place_vip_charge(client: ExchangeClient, biz_code: str = "BO20240520000001"):
    return client.vip_charge(VipCharge(product_code="87103", mobile="15012616978", account="w23b52", biz_code=biz_code))


def batch(batch_biz_code: str, product_code: str, *lines: tuple[str, str]) -> BatchCharge:
    items = [BatchItem(biz_code=biz_code, account=account) for biz_code, account in lines]
    return BatchCharge(batch_biz_code=batch_biz_code, product_code=product_code, items=items)


def assert_no_secret_stored() -> None:
    stored = json.dumps(list(ProviderCall.objects.values()), default=str, ensure_ascii=False)
    for secret in support.secrets_of_test_account():
        assert secret not in stored


# --- on the wire ----------------------------------------------------------------------------


def test_vip_charge_sends_the_recorded_request(client, upstream):
    upstream.post(VIP_CHARGE_URL, json=load("vipcharge_response_success.json"))

    place_vip_charge(client)

    assert_matches_fixture(wire_of(upstream.calls[0].request), "vipcharge_request.json")


def test_batch_charge_sends_the_recorded_request(client, upstream):
    upstream.post(BATCH_URL, json=load("batch_response_success.json"))

    client.batch_charge(BatchCharge(
        batch_biz_code="BATCH20240520001",
        product_code="54092",
        items=[
            BatchItem(biz_code="BO20240520000101", account="1000113200001234567", attach_values="张三",
                      spec=Decimal("100")),
            BatchItem(biz_code="BO20240520000102", account="1000113200007654321", spec=Decimal("100.50")),
        ],
    ))

    assert_matches_fixture(wire_of(upstream.calls[0].request), "batch_request.json")


def test_order_info_sends_the_recorded_request(client, upstream):
    upstream.post(INFO_URL, json=load("info_response_success.json"))

    client.order_info(OrderInfoQuery(biz_code="BO20240520000001"))

    assert_matches_fixture(wire_of(upstream.calls[0].request), "info_request.json")


def test_an_md5_account_sends_the_recorded_md5_signed_request(settings, upstream):
    settings.PROVIDERS = provider_accounts(environment(EXCHANGE_SIGN_TYPE="MD5", EXCHANGE_PRIVATE_KEY=""))
    client = ExchangeClient(clock=lambda: FIXED_TIME, nonce=lambda: FIXED_NONCE)
    upstream.post(VIP_CHARGE_URL, json=load("vipcharge_response_success.json"))

    place_vip_charge(client)

    assert_matches_fixture(wire_of(upstream.calls[0].request), "vipcharge_md5_request.json")


def test_the_body_sent_is_the_body_signed(client, upstream):
    upstream.post(VIP_CHARGE_URL, json=load("vipcharge_response_success.json"))

    place_vip_charge(client)

    from providers.exchange import signing

    sent = upstream.calls[0].request
    headers = {name: sent.headers[name] for name in ("businessId", "nonce", "signType", "timestamp")}
    public_key = signing.public_key_pem_of(support.MERCHANT_PRIVATE_KEY)
    message = signing.string_to_sign(headers, sent.body.decode("utf-8"))
    assert signing.verify(message, sent.headers["sign"], sign_type="SHA256-RSA", public_key_pem=public_key)


# --- reading the answers ----------------------------------------------------------------------


def test_an_accepted_vip_charge_gives_the_platform_order_and_an_exact_price(client, upstream):
    upstream.post(VIP_CHARGE_URL, json=load("vipcharge_response_success.json"))

    result = place_vip_charge(client)

    assert result.outcome == Outcome.ACCEPTED
    assert result.upstream_reference == "EX202405200001"
    assert result.client_reference == "BO20240520000001"
    assert result.settlement_price == Decimal("9.50")
    call = ProviderCall.objects.get()
    assert (call.provider, call.operation, call.outcome, call.client_reference) == (
        "exchange", "VIPCharge", "accepted", "BO20240520000001"
    )
    assert call.request_body == upstream.calls[0].request.body.decode("utf-8")
    assert_no_secret_stored()


def test_a_refused_vip_charge_raises_with_the_platform_code_and_message(client, upstream):
    upstream.post(VIP_CHARGE_URL, json=load("vipcharge_response_rejected.json"))

    with pytest.raises(ProviderRejected) as caught:
        place_vip_charge(client)

    assert caught.value.code == "409"
    assert caught.value.message == "商家订单号重复"
    assert ProviderCall.objects.get().outcome == Outcome.FAILED
    assert_no_secret_stored()


def test_a_non_success_status_that_names_a_platform_order_is_unknown_not_refused(client, upstream):
    upstream.post(
        VIP_CHARGE_URL,
        json={"status": 961, "message": "success", "data": {"orderCode": "EX1", "bizCode": "BO20240520000001"}},
    )

    result = place_vip_charge(client)

    assert result.outcome == Outcome.UNKNOWN
    assert result.code == "961"


OPERATIONS = {
    "VIPCharge": (VIP_CHARGE_URL, lambda client: place_vip_charge(client)),
    "batch": (BATCH_URL, lambda client: client.batch_charge(batch("B1", "54092", ("BO1", "a")))),
    "info": (INFO_URL, lambda client: client.order_info(OrderInfoQuery(biz_code="BO20240520000001"))),
}
LOST_OR_UNREADABLE = {
    "read timeout": {"body": requests.exceptions.ReadTimeout("read timed out")},
    "5xx": {"status": 502, "body": "Bad Gateway"},
    "malformed": {"status": 200, "body": "<html>gateway error</html>"},
    "not the envelope": {"status": 200, "json": {"unexpected": True}},
}


@pytest.mark.parametrize("answer", LOST_OR_UNREADABLE.values(), ids=LOST_OR_UNREADABLE.keys())
@pytest.mark.parametrize("operation", OPERATIONS.keys())
def test_an_answer_that_is_lost_or_unreadable_is_unknown_and_not_resent(client, upstream, operation, answer):
    url, call = OPERATIONS[operation]
    upstream.post(url, **answer)

    with pytest.raises(OutcomeUnknown):
        call(client)

    assert len(upstream.calls) == 1
    assert ProviderCall.objects.get().outcome == Outcome.UNKNOWN
    assert_no_secret_stored()


def test_a_call_broken_by_something_else_is_still_written_to_the_log_once(client, upstream):
    upstream.post(VIP_CHARGE_URL, body=RuntimeError("the worker is shutting down"))

    with pytest.raises(RuntimeError):
        place_vip_charge(client)

    call = ProviderCall.objects.get()
    assert call.outcome == Outcome.UNKNOWN and call.client_reference == "BO20240520000001"
    assert call.error == "RuntimeError: the worker is shutting down"
    assert call.created_at <= call.finished_at
    assert_no_secret_stored()


def test_an_answer_about_another_order_is_unknown(client, upstream):
    upstream.post(VIP_CHARGE_URL, json={"status": 200, "message": "ok", "data": {"bizCode": "another"}})

    with pytest.raises(OutcomeUnknown):
        place_vip_charge(client)


@pytest.mark.parametrize("operation", OPERATIONS.keys())
def test_a_call_that_cannot_connect_was_not_sent(settings, operation):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.PROVIDERS = provider_accounts(environment(EXCHANGE_BASE_URL=f"http://127.0.0.1:{closed_port}"))

    with pytest.raises(ProviderNotReached) as caught:
        OPERATIONS[operation][1](ExchangeClient())

    assert caught.value.retry_safe
    assert ProviderCall.objects.get().outcome == ""


def test_a_batch_gives_one_item_per_biz_code_in_request_order(client, upstream):
    answer = load("batch_response_success.json")
    answer["data"].reverse()
    upstream.post(BATCH_URL, json=answer)

    result = client.batch_charge(batch("BATCH20240520001", "54092", ("BO20240520000101", "acc-1"), ("BO20240520000102", "acc-2")))

    assert result.outcome == Outcome.ACCEPTED
    assert result.client_reference == "BATCH20240520001"
    assert [(i.client_reference, i.upstream_reference, i.outcome) for i in result.items] == [
        ("BO20240520000101", "EX202405200101", Outcome.ACCEPTED),
        ("BO20240520000102", "EX202405200102", Outcome.ACCEPTED),
    ]
    assert result.items[0].settlement_price == Decimal("95.00")


def test_a_batch_line_missing_from_the_answer_is_unknown(client, upstream):
    answer = load("batch_response_success.json")
    answer["data"] = answer["data"][:1]
    upstream.post(BATCH_URL, json=answer)

    result = client.batch_charge(batch("BATCH20240520001", "54092", ("BO20240520000101", "acc-1"), ("BO20240520000102", "acc-2")))

    assert [item.outcome for item in result.items] == [Outcome.ACCEPTED, Outcome.UNKNOWN]


def test_a_refused_batch_raises(client, upstream):
    upstream.post(BATCH_URL, json={"status": 410, "message": "产品不存在", "data": None})

    with pytest.raises(ProviderRejected) as caught:
        client.batch_charge(batch("B1", "0", ("BO1", "acc")))

    assert caught.value.code == "410"


@pytest.mark.parametrize(
    ("order_status", "outcome"),
    [
        ("SUCCESS", Outcome.SUCCEEDED),
        ("FAILED", Outcome.FAILED),
        ("PROCESSING", Outcome.ACCEPTED),
        ("SOMETHING_NEW", Outcome.UNKNOWN),
        (None, Outcome.UNKNOWN),
    ],
)
def test_order_info_maps_the_order_state_and_never_guesses_success(client, upstream, order_status, outcome):
    answer = load("info_response_success.json")
    answer["data"]["status"] = order_status
    upstream.post(INFO_URL, json=answer)

    result = client.order_info(OrderInfoQuery(biz_code="BO20240520000001"))

    assert result.outcome == outcome
    assert result.upstream_reference == "EX202405200001"


def test_order_info_refused_raises_without_saying_anything_about_the_order(client, upstream):
    upstream.post(INFO_URL, json={"status": 404, "message": "订单不存在", "data": None})

    with pytest.raises(ProviderRejected) as caught:
        client.order_info(OrderInfoQuery(biz_code="BO20240520000001"))

    assert caught.value.code == "404"


# --- our own bad input ------------------------------------------------------------------------


def vip_charge_with(**changes) -> VipCharge:
    fields = {"product_code": "87103", "mobile": "15012616978", "account": "w23b52", "biz_code": "BO20240520000001"}
    return VipCharge(**{**fields, **changes})


def batch_item_with(**changes) -> BatchItem:
    return BatchItem(**{"biz_code": "BO20240520000101", "account": "acc-1", **changes})


def batch_with(**changes) -> BatchCharge:
    fields = {"batch_biz_code": "BATCH20240520001", "product_code": "54092", "items": [batch_item_with()]}
    return BatchCharge(**{**fields, **changes})


@pytest.fixture
def answering_upstream():
    """Every endpoint answers with success, so a request that went out would be seen, not fail on its own."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(VIP_CHARGE_URL, json=load("vipcharge_response_success.json"))
        mock.post(BATCH_URL, json=load("batch_response_success.json"))
        mock.post(INFO_URL, json=load("info_response_success.json"))
        yield mock


BAD_REQUESTS = {
    "VIPCharge, no product code": (lambda c: c.vip_charge(vip_charge_with(product_code="")), "product_code"),
    "VIPCharge, product code a number": (lambda c: c.vip_charge(vip_charge_with(product_code=87103)), "product_code"),
    "VIPCharge, blank account": (lambda c: c.vip_charge(vip_charge_with(account="  ")), "account"),
    "VIPCharge, account too long": (lambda c: c.vip_charge(vip_charge_with(account="a" * 129)), "account"),
    "VIPCharge, order number too long": (lambda c: c.vip_charge(vip_charge_with(biz_code="b" * 65)), "biz_code"),
    "VIPCharge, no order number": (lambda c: c.vip_charge(vip_charge_with(biz_code=None)), "biz_code"),
    "VIPCharge, mobile too long": (lambda c: c.vip_charge(vip_charge_with(mobile="1" * 21)), "mobile"),
    "VIPCharge, mobile a number": (lambda c: c.vip_charge(vip_charge_with(mobile=15012616978)), "mobile"),
    "batch, no items": (lambda c: c.batch_charge(batch_with(items=[])), "items"),
    "batch, items not batch items": (lambda c: c.batch_charge(batch_with(items=[("x", "a")])), "items"),
    "batch, items not a list": (lambda c: c.batch_charge(batch_with(items=None)), "items"),
    "batch, an order twice": (
        lambda c: c.batch_charge(batch_with(items=[batch_item_with(biz_code="x"), batch_item_with(biz_code="x ")])),
        "items",
    ),
    "batch, no batch number": (lambda c: c.batch_charge(batch_with(batch_biz_code="")), "batch_biz_code"),
    "batch, no product code": (lambda c: c.batch_charge(batch_with(product_code=" ")), "product_code"),
    "batch item, no account": (lambda c: c.batch_charge(batch_with(items=[batch_item_with(account="")])), "account"),
    "batch item, order number too long": (
        lambda c: c.batch_charge(batch_with(items=[batch_item_with(biz_code="b" * 65)])), "biz_code"
    ),
    "batch item, attached values too long": (
        lambda c: c.batch_charge(batch_with(items=[batch_item_with(attach_values="v" * 513)])), "attach_values"
    ),
    "batch item, zero face value": (lambda c: c.batch_charge(batch_with(items=[batch_item_with(spec=Decimal("0"))])), "spec"),
    "batch item, face value below a cent": (
        lambda c: c.batch_charge(batch_with(items=[batch_item_with(spec=Decimal("1.001"))])), "spec"
    ),
    "batch item, face value a float": (lambda c: c.batch_charge(batch_with(items=[batch_item_with(spec=1.5)])), "spec"),
    "info, no order number": (lambda c: c.order_info(OrderInfoQuery(biz_code="")), "biz_code"),
    "info, order number too long": (lambda c: c.order_info(OrderInfoQuery(biz_code="b" * 65)), "biz_code"),
}


@pytest.mark.parametrize(("call", "field"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_field_is_refused_naming_it_before_anything_is_sent_or_recorded(client, answering_upstream, call, field):
    with pytest.raises(InvalidRequest) as caught:
        call(client)

    assert caught.value.field == field
    assert caught.value.message
    assert consequence_of(caught.value) is Consequence.NOT_CARRIED_OUT
    assert len(answering_upstream.calls) == 0
    assert ProviderCall.objects.count() == 0


def test_a_request_is_checked_and_trimmed_once_and_cannot_be_changed_afterwards():
    request = vip_charge_with(account=" w23b52 ", mobile=None)
    items = [batch_item_with(spec=Decimal("100"))]
    batch_request = batch_with(items=items)
    items.append(batch_item_with())  # would be the same order twice, had the request kept the caller's list

    assert (request.account, request.mobile) == ("w23b52", "")
    assert batch_request.items == (batch_item_with(spec=Decimal("100.00")),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.account = ""  # type: ignore[misc]


# --- callbacks --------------------------------------------------------------------------------


def callback_body() -> str:
    return (support.FIXTURES / "callback_success.json").read_text(encoding="utf-8").strip()


def test_a_signed_callback_is_read_into_a_typed_status(client):
    body = callback_body()

    callback = client.verify_callback(callback_headers(body), body.encode("utf-8"))

    assert callback.order_code == "EX202405200001"
    assert callback.biz_code == "BO20240520000001"
    assert callback.status == Outcome.SUCCEEDED
    assert callback.settlement_price == Decimal("9.50")
    assert callback.raw["message"] == "充值成功"


def test_a_callback_verifies_with_headers_as_django_presents_them(client):
    body = callback_body()
    django_style = {name.title(): value for name, value in callback_headers(body).items()}

    assert client.verify_callback(django_style, body.encode("utf-8")).status == Outcome.SUCCEEDED


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda headers, body: (headers, body.replace(b"SUCCESS", b"FAILED")), id="body changed"),
        pytest.param(lambda headers, body: ({**headers, "nonce": "other"}, body), id="header changed"),
        pytest.param(lambda headers, body: ({**headers, "sign": "AAAA"}, body), id="wrong signature"),
        pytest.param(lambda headers, body: ({k: v for k, v in headers.items() if k != "sign"}, body), id="no signature"),
        pytest.param(lambda headers, body: (headers, b"\xff\xfe"), id="not utf-8"),
    ],
)
def test_a_callback_that_does_not_verify_is_refused(client, tamper):
    body = callback_body().encode("utf-8")
    headers, body = tamper(callback_headers(body.decode("utf-8")), body)

    with pytest.raises(SignatureInvalid):
        client.verify_callback(headers, body)


def test_a_callback_signed_with_the_merchant_key_instead_of_the_platform_key_is_refused(client):
    body = callback_body()
    headers = callback_headers(body, private_key_pem=support.MERCHANT_PRIVATE_KEY)

    with pytest.raises(SignatureInvalid):
        client.verify_callback(headers, body.encode("utf-8"))


def test_an_md5_account_verifies_md5_signed_callbacks(settings):
    from providers.exchange import signing

    settings.PROVIDERS = provider_accounts(environment(EXCHANGE_SIGN_TYPE="MD5"))
    body = callback_body()
    headers = {"businessId": support.BUSINESS_ID, "nonce": "n1", "timestamp": "1628772200000"}
    headers["sign"] = signing.sign_md5(signing.string_to_sign(headers, body), support.MD5_KEY)

    callback = ExchangeClient().verify_callback(headers, body.encode("utf-8"))

    assert callback.status == Outcome.SUCCEEDED


@pytest.mark.parametrize("md5_key", ["", support.MD5_KEY], ids=["no MD5 key", "MD5 key known"])
def test_an_rsa_account_refuses_a_callback_that_names_md5(settings, md5_key):
    from providers.exchange import signing

    settings.PROVIDERS = provider_accounts(environment(EXCHANGE_MD5_KEY=md5_key))
    body = callback_body()
    headers = {"businessId": support.BUSINESS_ID, "nonce": "n1", "signType": "MD5", "timestamp": "1628772200000"}
    message = signing.string_to_sign(headers, body)
    headers["sign"] = signing.sign_md5(message, md5_key) if md5_key else hashlib.md5(message.encode()).hexdigest()

    with pytest.raises(SignatureInvalid, match="MD5"):
        ExchangeClient().verify_callback(headers, body.encode("utf-8"))


def test_an_md5_account_without_its_key_is_misconfigured(settings):
    settings.PROVIDERS = provider_accounts(environment(EXCHANGE_SIGN_TYPE="MD5", EXCHANGE_MD5_KEY=""))

    with pytest.raises(ProviderMisconfigured, match="EXCHANGE_MD5_KEY"):
        ExchangeClient.for_callback(callback_headers(callback_body()))


def test_a_callback_is_read_as_the_account_its_business_id_names(settings):
    from providers.exchange import signing

    settings.PROVIDERS = provider_accounts(environment(
        EXCHANGE_ACCOUNTS="second", EXCHANGE_SECOND_BASE_URL=BASE_URL, EXCHANGE_SECOND_BUSINESS_ID="second-business",
        EXCHANGE_SECOND_MERCHANT_ID="second-merchant", EXCHANGE_SECOND_SIGN_TYPE="MD5", EXCHANGE_SECOND_MD5_KEY="k2",
    ))
    body = callback_body()
    headers = {"businessId": "second-business", "nonce": "n2", "timestamp": "1628772200000"}
    headers["sign"] = signing.sign_md5(signing.string_to_sign(headers, body), "k2")

    client = ExchangeClient.for_callback(headers)
    callback = client.verify_callback(headers, body.encode("utf-8"))

    assert client.merchant_account == callback.merchant_account == "second"
    assert (callback.nonce, callback.timestamp_ms) == ("n2", 1628772200000)
    assert ExchangeClient.for_callback(callback_headers(body)).merchant_account == "default"
    with pytest.raises(SignatureInvalid):
        ExchangeClient.for_callback({**headers, "businessId": "nobody"})


def test_two_accounts_with_one_business_id_are_misconfigured(settings):
    settings.PROVIDERS = provider_accounts(environment(
        EXCHANGE_ACCOUNTS="second", EXCHANGE_SECOND_BASE_URL=BASE_URL, EXCHANGE_SECOND_BUSINESS_ID=support.BUSINESS_ID,
        EXCHANGE_SECOND_MERCHANT_ID="second-merchant", EXCHANGE_SECOND_SIGN_TYPE="MD5", EXCHANGE_SECOND_MD5_KEY="k2",
    ))

    with pytest.raises(ProviderMisconfigured, match="EXCHANGE_BUSINESS_ID, EXCHANGE_SECOND_BUSINESS_ID"):
        ExchangeClient.for_callback(callback_headers(callback_body()))


def test_a_header_given_twice_with_two_values_is_refused(client):
    body = callback_body()
    headers = callback_headers(body)

    with pytest.raises(InvalidRequest) as caught:
        client.verify_callback({**headers, "Nonce": "another"}, body.encode("utf-8"))

    assert caught.value.field == "Nonce"


def test_no_nonce_the_header_shapes_allow_is_longer_than_the_column_that_stores_it():
    from orders.models import CallbackNonce
    from providers.exchange.client import CALLBACK_HEADER_SHAPES, MAX_NONCE_LENGTH

    assert MAX_NONCE_LENGTH <= CallbackNonce._meta.get_field("nonce").max_length
    assert CALLBACK_HEADER_SHAPES["nonce"].fullmatch("n" * MAX_NONCE_LENGTH)
    assert not CALLBACK_HEADER_SHAPES["nonce"].fullmatch("n" * (MAX_NONCE_LENGTH + 1))


def test_a_business_id_that_could_not_be_signed_is_misconfigured(settings):
    settings.PROVIDERS = provider_accounts(environment(EXCHANGE_BUSINESS_ID="b&nonce=x"))

    with pytest.raises(ProviderMisconfigured, match="EXCHANGE_BUSINESS_ID"):
        place_vip_charge(ExchangeClient())


# --- settings ---------------------------------------------------------------------------------


def test_a_missing_credential_names_its_environment_variable(settings):
    settings.PROVIDERS = provider_accounts(environment(EXCHANGE_PRIVATE_KEY=""))

    client = ExchangeClient()  # made without reading the settings: the call that needs them fails

    with pytest.raises(ProviderMisconfigured, match="EXCHANGE_PRIVATE_KEY") as caught:
        place_vip_charge(client)
    assert consequence_of(caught.value) is Consequence.NOT_CARRIED_OUT  # raised before anything was sent
    assert not ProviderCall.objects.exists()


def test_an_unusable_private_key_names_its_environment_variable(settings):
    settings.PROVIDERS = provider_accounts(environment(EXCHANGE_PRIVATE_KEY="not a key"))

    with pytest.raises(ProviderMisconfigured, match="EXCHANGE_PRIVATE_KEY"):
        place_vip_charge(ExchangeClient())


def test_settings_keep_pem_keys_and_hide_secrets_from_repr():
    config = ExchangeSettings.for_account()

    assert config.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert config.sign_type == "SHA256-RSA"
    text = repr(config)
    assert "PRIVATE KEY" not in text and support.MD5_KEY not in text and "PUBLIC KEY" not in text
