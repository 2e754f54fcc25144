"""Status callbacks: verified, replay-proof, stored raw, idempotent, answered as the vendors expect."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from decimal import Decimal

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory
from pghistory.models import Events

from config.provider_settings import provider_accounts
from orders.models import CallbackNonce, OrderStatus, RechargeOrder
from orders.services import order_create, orders_place
from providers.bst17 import signing as bst17_signing
from providers.exchange import signing
from providers.models import ProviderCall
from tests.providers import bst17_support, exchange_support

pytestmark = pytest.mark.django_db

URL = "/callbacks/exchange/"


@pytest.fixture(autouse=True)
def test_accounts(settings):
    settings.PROVIDERS = provider_accounts({**exchange_support.environment(), **bst17_support.environment()})


@pytest.fixture
def accepted_order(clerk, distributor, direct_charge_product):
    order = order_create(distributor=distributor, product=direct_charge_product, actor=clerk, target_account="13800000000")
    orders_place(ids=[order.pk], actor=clerk)
    RechargeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.ACCEPTED)
    return RechargeOrder.objects.get(pk=order.pk)


def callback_body(order, status="SUCCESS") -> str:
    return json.dumps({"orderCode": "EX1", "bizCode": order.client_reference, "status": status,
                       "settlementPrice": 9.5, "message": "充值成功"}, separators=(",", ":"))


def signed_headers(body: str, *, nonce: str | None = None, timestamp_ms: int | None = None,
                   private_key: str = exchange_support.PLATFORM_PRIVATE_KEY,
                   business_id: str = exchange_support.BUSINESS_ID) -> dict[str, str]:
    headers = {"businessId": business_id, "nonce": nonce or uuid.uuid4().hex,
               "timestamp": str(timestamp_ms or int(time.time() * 1000))}
    headers["sign"] = signing.sign_sha256_rsa(signing.string_to_sign(headers, body), private_key)
    return headers


def post(client, body: str, headers: dict[str, str], url: str = URL):
    return client.post(url, data=body, content_type="application/json", headers=headers)


def order_updates(order) -> int:
    return Events.objects.tracks(order).filter(pgh_label="update").count()


def test_a_valid_callback_finishes_the_order_and_is_answered_success(client, accepted_order):
    body = callback_body(accepted_order)

    response = post(client, body, signed_headers(body))

    assert response.status_code == 200 and response.content == b"SUCCESS"
    accepted_order.refresh_from_db()
    assert accepted_order.status == OrderStatus.SUCCEEDED
    assert accepted_order.settlement_price == Decimal("9.50")
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.request_body == body and stored.signature_valid is True


def test_retried_deliveries_change_nothing_after_the_first(client, accepted_order):
    body = callback_body(accepted_order)
    post(client, body, signed_headers(body))
    updates_after_first = order_updates(accepted_order)

    answers = [post(client, body, signed_headers(body)).content for _ in range(8)]
    late_failure = callback_body(accepted_order, status="FAILED")
    answers.append(post(client, late_failure, signed_headers(late_failure)).content)

    assert answers == [b"SUCCESS"] * 9
    assert order_updates(accepted_order) == updates_after_first
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.SUCCEEDED


def test_a_delivery_that_breaks_the_back_office_is_still_in_the_call_log(client, accepted_order, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("orders.views.exchange_callback_apply", broken)
    client.raise_request_exception = False
    body = callback_body(accepted_order)

    response = post(client, body, signed_headers(body))

    assert response.status_code == 500
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.request_body == body and stored.signature_valid is True
    assert stored.response_status == 500 and stored.error == "RuntimeError: database went away"
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.ACCEPTED


def test_a_callback_for_an_order_we_never_placed_is_refused_and_stored(client, accepted_order):
    body = json.dumps({"orderCode": "EX9", "bizCode": "NOSUCHORDER", "status": "SUCCESS", "settlementPrice": 9.5,
                       "message": "充值成功"}, separators=(",", ":"))

    response = post(client, body, signed_headers(body))

    assert response.status_code == 404
    assert ProviderCall.objects.get(direction="callback").client_reference == "NOSUCHORDER"
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.ACCEPTED


def test_a_bad_signature_is_refused_stored_as_invalid_and_changes_nothing(client, accepted_order):
    body = callback_body(accepted_order)
    headers = signed_headers(body)
    tampered = body.replace("9.5", "0.01")

    response = post(client, tampered, headers)

    assert response.status_code == 401
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.ACCEPTED
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.signature_valid is False and stored.request_body == tampered


def test_a_signature_by_another_key_or_for_another_merchant_is_refused(client, accepted_order):
    body = callback_body(accepted_order)
    other_key = signing.generate_private_key_pem()

    by_other_key = post(client, body, signed_headers(body, private_key=other_key))
    for_other_merchant = post(client, body, signed_headers(body, business_id="0" * 32))

    assert by_other_key.status_code == for_other_merchant.status_code == 401
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.ACCEPTED


def test_a_replayed_nonce_and_a_stale_timestamp_are_refused(client, accepted_order):
    body = callback_body(accepted_order, status="FAILED")
    headers = signed_headers(body, nonce="nonce-once")
    stale = signed_headers(body, timestamp_ms=int(time.time() * 1000) - 10 * 60 * 1000)

    assert post(client, body, stale).status_code == 400
    first = post(client, body, headers)
    replay = post(client, body, headers)

    assert first.status_code == 200 and replay.status_code == 409
    assert ProviderCall.objects.filter(direction="callback").count() == 3


def test_a_nonce_seen_on_one_order_moves_no_other(client, accepted_order, clerk, distributor, direct_charge_product):
    other = order_create(distributor=distributor, product=direct_charge_product, actor=clerk,
                         target_account="13800000001")
    orders_place(ids=[other.pk], actor=clerk)
    RechargeOrder.objects.filter(pk=other.pk).update(status=OrderStatus.ACCEPTED)
    first_body, other_body = callback_body(accepted_order), callback_body(other)
    updates_before = order_updates(other)

    first = post(client, first_body, signed_headers(first_body, nonce="nonce-shared"))
    replay = post(client, other_body, signed_headers(other_body, nonce="nonce-shared"))

    assert first.status_code == 200 and replay.status_code == 409
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.SUCCEEDED
    assert RechargeOrder.objects.get(pk=other.pk).status == OrderStatus.ACCEPTED
    assert order_updates(other) == updates_before
    stored = ProviderCall.objects.get(direction="callback", client_reference=other.client_reference)
    assert stored.response_status == 409 and stored.error == "nonce already used"


def test_a_nonce_is_taken_only_with_the_changes_of_its_callback(client, accepted_order, monkeypatch):
    """A failure callback that breaks while applied leaves its nonce free, like everything else it did."""
    def broken(*args, **kwargs):
        raise RuntimeError("ledger unavailable")

    monkeypatch.setattr("orders.services.order_transition", broken)
    client.raise_request_exception = False
    body = callback_body(accepted_order, status="FAILED")
    headers = signed_headers(body, nonce="nonce-after-failure")

    broke = post(client, body, headers)
    monkeypatch.undo()
    retried = post(client, body, headers)

    assert broke.status_code == 500 and retried.status_code == 200
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.FAILED


def test_a_huge_body_and_malformed_json_are_refused(client, accepted_order):
    huge = "{" + '"x":"' + "a" * 100_000 + '"}'
    malformed = '{"orderCode": '

    assert post(client, huge, signed_headers(huge)).status_code == 413
    assert post(client, malformed, signed_headers(malformed)).status_code == 400
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.ACCEPTED


def test_a_17bst_callback_with_a_bad_sign_is_refused(client, clerk, distributor, gift_card_product):
    order = order_create(distributor=distributor, product=gift_card_product, actor=clerk)
    payload = {"agtPhone": bst17_support.environment()["BST17_AGT_PHONE"], "reqStreamId": order.client_reference,
               "state": "1", "sign": "0" * 32}

    response = client.post("/callbacks/bst17/", data=payload)

    assert response.status_code == 401
    assert ProviderCall.objects.get(direction="callback", provider="bst17").signature_valid is False


def test_a_17bst_failure_callback_fails_the_order_and_releases_the_hold(client, clerk, distributor,
                                                                       gift_card_product):
    order = order_create(distributor=distributor, product=gift_card_product, actor=clerk)
    orders_place(ids=[order.pk], actor=clerk)
    RechargeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.ACCEPTED)
    environment = bst17_support.environment()
    agt_phone, app_key = environment["BST17_AGT_PHONE"], environment["BST17_APP_KEY"]
    payload = {"agtPhone": agt_phone, "reqStreamId": order.client_reference, "state": "1",
               "sign": bst17_signing.callback_sign(agt_phone, order.client_reference, "1", app_key)}

    response = client.post("/callbacks/bst17/", data=payload)

    assert response.status_code == 200 and response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.FAILED
    assert order.distributor.accounts.get(kind="prepaid").balance == Decimal("1000.00")


# --- the deployed WSGI application: callbacks on their own, lean middleware stack ----------------


def through_wsgi_application(method: str, path: str, body: str = "", headers: dict[str, str] | None = None):
    """One request through config.wsgi.application, as gunicorn serves it (the test client has its own handler)."""
    from config.wsgi import application

    request = RequestFactory().generic(method, path, body, content_type="application/json", headers=headers or {})
    answer: dict = {}

    def start_response(status, response_headers, exc_info=None):
        answer.update(status=int(status.split()[0]), headers=dict(response_headers))

    # As Django's test client does: the test's transaction must outlive the request's end.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        result = application(request.environ, start_response)
        answer["content"] = b"".join(result)
        result.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return answer


def test_the_deployed_application_applies_a_callback_attributed_to_its_request(accepted_order):
    body = callback_body(accepted_order)

    answer = through_wsgi_application("POST", URL, body, signed_headers(body))

    assert answer["status"] == 200 and answer["content"] == b"SUCCESS"
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.SUCCEEDED
    update = Events.objects.tracks(accepted_order).filter(pgh_label="update").order_by("pgh_id").last()
    assert update.pgh_context["source"] == "web" and update.pgh_context["url"] == URL
    assert ProviderCall.objects.get(direction="callback").response_body == "SUCCESS"


def test_callbacks_skip_the_browser_middleware_that_every_other_page_keeps(accepted_order):
    body = callback_body(accepted_order)

    callback = through_wsgi_application("POST", URL, body, signed_headers(body))
    login_page = through_wsgi_application("GET", "/admin/login/")

    assert login_page["status"] == 200
    for browser_header in ("Content-Security-Policy", "X-Frame-Options", "Content-Language"):
        assert browser_header in login_page["headers"], browser_header
        assert browser_header not in callback["headers"], browser_header
    # The security middleware runs for both.
    assert callback["headers"]["X-Content-Type-Options"] == login_page["headers"]["X-Content-Type-Options"] == "nosniff"


# --- forged and smuggled callbacks ----------------------------------------------------------------
# Each merchant account's callbacks are verified with that account's keys and its configured sign
# type only, move only that account's orders, and carry headers of a strict shape.

SECOND_BUSINESS_ID = "9c2d4e6f8a0b4c1d9e3f5a7b2c4d6e80"
SECOND_MD5_KEY = "second-account-md5-key-5d4c3b2a"
SECOND_AGT_PHONE = "13912345678"
SECOND_APP_KEY = "S3condAppK3y0042"


def with_second_accounts(**overrides: str) -> dict:
    """The test accounts plus a second merchant account at each platform (an MD5 one at the redemption platform)."""
    return provider_accounts({
        **exchange_support.environment(),
        **bst17_support.environment(),
        "EXCHANGE_ACCOUNTS": "second",
        "EXCHANGE_SECOND_BASE_URL": exchange_support.BASE_URL,
        "EXCHANGE_SECOND_BUSINESS_ID": SECOND_BUSINESS_ID,
        "EXCHANGE_SECOND_MERCHANT_ID": "0a1b2c3d4e5f40718293a4b5c6d7e8f9",
        "EXCHANGE_SECOND_SIGN_TYPE": "MD5",
        "EXCHANGE_SECOND_MD5_KEY": SECOND_MD5_KEY,
        "BST17_ACCOUNTS": "second",
        "BST17_SECOND_BASE_URL": bst17_support.BASE_URL,
        "BST17_SECOND_APP_ID": "7c22997168",
        "BST17_SECOND_APP_KEY": SECOND_APP_KEY,
        "BST17_SECOND_AGT_PHONE": SECOND_AGT_PHONE,
        "BST17_SECOND_TRADE_PASSWORD": "second-trade-pw-0815",
        **overrides,
    })


def md5_headers(body: str, *, md5_key: str, business_id: str = exchange_support.BUSINESS_ID,
                sign_type: str | None = "MD5", nonce: str | None = None) -> dict[str, str]:
    headers = {"businessId": business_id, "nonce": nonce or uuid.uuid4().hex,
               "timestamp": str(int(time.time() * 1000))}
    if sign_type is not None:
        headers["signType"] = sign_type
    headers["sign"] = signing.sign_md5(signing.string_to_sign(headers, body), md5_key) if md5_key else (
        # What the forger computes when the key is empty: md5 of the string alone.
        hashlib.md5(signing.string_to_sign(headers, body).encode()).hexdigest()
    )
    return headers


def prepaid_balance(order) -> Decimal:
    return order.distributor.accounts.get(kind="prepaid").balance


def money_and_state(order) -> tuple:
    """What a forged callback must leave as it was: the order's status and history, and the held money."""
    return RechargeOrder.objects.get(pk=order.pk).status, order_updates(order), prepaid_balance(order)


def accepted_order_of(account: str, product, clerk, distributor) -> RechargeOrder:
    product.merchant_account = account
    product.save(update_fields=["merchant_account"])
    order = order_create(distributor=distributor, product=product, actor=clerk, target_account="13800000000")
    orders_place(ids=[order.pk], actor=clerk)
    RechargeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.ACCEPTED)
    return RechargeOrder.objects.get(pk=order.pk)


@pytest.mark.parametrize("sign_type_header", ["MD5", None], ids=["signType MD5", "no signType"])
@pytest.mark.parametrize("md5_key", ["", exchange_support.MD5_KEY], ids=["no MD5 key", "MD5 key known"])
def test_an_md5_signed_callback_on_an_rsa_account_is_refused(client, accepted_order, settings, sign_type_header,
                                                            md5_key):
    """The forger's FAILED would release the hold while the platform still charges."""
    settings.PROVIDERS = provider_accounts(exchange_support.environment(EXCHANGE_MD5_KEY=md5_key))
    before = money_and_state(accepted_order)
    body = callback_body(accepted_order, status="FAILED")

    response = post(client, body, md5_headers(body, md5_key=md5_key, sign_type=sign_type_header))

    assert response.status_code == 401
    assert money_and_state(accepted_order) == before
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.signature_valid is False and stored.response_status == 401
    assert not CallbackNonce.objects.exists()


def test_an_rsa_signed_callback_on_an_md5_account_is_refused(client, accepted_order, settings):
    settings.PROVIDERS = provider_accounts(exchange_support.environment(EXCHANGE_SIGN_TYPE="MD5"))
    before = money_and_state(accepted_order)
    body = callback_body(accepted_order, status="FAILED")
    headers = {"businessId": exchange_support.BUSINESS_ID, "nonce": "n-rsa", "signType": "SHA256-RSA",
               "timestamp": str(int(time.time() * 1000))}
    headers["sign"] = signing.sign_sha256_rsa(signing.string_to_sign(headers, body), exchange_support.PLATFORM_PRIVATE_KEY)

    response = post(client, body, headers)

    assert response.status_code == 401
    assert money_and_state(accepted_order) == before
    assert ProviderCall.objects.get(direction="callback").signature_valid is False


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        pytest.param({"EXCHANGE_SIGN_TYPE": "MD5", "EXCHANGE_MD5_KEY": ""}, "EXCHANGE_MD5_KEY", id="MD5 without key"),
        pytest.param({"EXCHANGE_PLATFORM_PUBLIC_KEY": ""}, "EXCHANGE_PLATFORM_PUBLIC_KEY", id="RSA without public key"),
    ],
)
def test_an_account_without_the_key_of_its_sign_type_accepts_no_callback(client, accepted_order, settings, overrides,
                                                                         variable):
    settings.PROVIDERS = provider_accounts(exchange_support.environment(**overrides))
    before = money_and_state(accepted_order)
    body = callback_body(accepted_order, status="FAILED")
    sign_type = "MD5" if overrides.get("EXCHANGE_SIGN_TYPE") == "MD5" else None

    response = post(client, body, md5_headers(body, md5_key="", sign_type=sign_type))

    assert response.status_code == 503 and response.content == b"misconfigured"
    assert money_and_state(accepted_order) == before
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.signature_valid is None and variable in stored.error


@pytest.mark.parametrize("status", ["SUCCESS", "FAILED"])
def test_a_valid_callback_of_one_account_moves_no_order_of_another(client, settings, clerk, distributor,
                                                                   direct_charge_product, status):
    settings.PROVIDERS = with_second_accounts()
    order = accepted_order_of("second", direct_charge_product, clerk, distributor)
    before = money_and_state(order)
    body = callback_body(order, status=status)

    response = post(client, body, signed_headers(body))  # the default account, validly signed

    assert response.status_code == 404
    assert money_and_state(order) == before
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.response_status == 404 and stored.client_reference == order.client_reference


def test_each_account_s_callbacks_are_verified_with_its_own_keys_and_type(client, settings, clerk, distributor,
                                                                           direct_charge_product):
    settings.PROVIDERS = with_second_accounts()
    order = accepted_order_of("second", direct_charge_product, clerk, distributor)
    body = callback_body(order)

    with_default_key = post(client, body, md5_headers(body, md5_key=exchange_support.MD5_KEY,
                                                      business_id=SECOND_BUSINESS_ID))
    with_rsa = post(client, body, signed_headers(body, business_id=SECOND_BUSINESS_ID))
    assert RechargeOrder.objects.get(pk=order.pk).status == OrderStatus.ACCEPTED
    with_its_key = post(client, body, md5_headers(body, md5_key=SECOND_MD5_KEY, business_id=SECOND_BUSINESS_ID))

    assert with_default_key.status_code == with_rsa.status_code == 401
    assert with_its_key.status_code == 200 and with_its_key.content == b"SUCCESS"
    assert RechargeOrder.objects.get(pk=order.pk).status == OrderStatus.SUCCEEDED


def test_a_nonce_smuggling_the_sign_type_is_refused_and_takes_nothing(client, accepted_order):
    body = callback_body(accepted_order)
    delivered = {"businessId": exchange_support.BUSINESS_ID, "nonce": "n1", "signType": "SHA256-RSA",
                 "timestamp": str(int(time.time() * 1000))}
    delivered["sign"] = signing.sign_sha256_rsa(signing.string_to_sign(delivered, body),
                                                exchange_support.PLATFORM_PRIVATE_KEY)
    # The same string to sign, so the same signature, but (before the fix) a new nonce.
    smuggled = {"businessId": delivered["businessId"], "nonce": "n1&signType=SHA256-RSA",
                "timestamp": delivered["timestamp"], "sign": delivered["sign"]}

    refused = post(client, body, smuggled)

    assert refused.status_code == 400
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.ACCEPTED
    assert not CallbackNonce.objects.exists()
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.response_status == 400 and "nonce" in stored.error
    # The genuine delivery still goes through: its nonce was not taken by the refused one.
    assert post(client, body, delivered).status_code == 200
    assert post(client, body, smuggled).status_code == 400


def test_a_nonce_longer_than_the_column_is_a_bad_request_not_a_server_error(client, accepted_order):
    body = callback_body(accepted_order)

    response = post(client, body, signed_headers(body, nonce="n" * 200))

    assert response.status_code == 400
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.ACCEPTED
    assert not CallbackNonce.objects.exists()
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.response_status == 400 and "nonce" in stored.error


def now_ms() -> str:
    return str(int(time.time() * 1000))


FULLWIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        pytest.param("businessId", exchange_support.BUSINESS_ID + "&nonce=x", id="businessId with &"),
        pytest.param("businessId", " " + exchange_support.BUSINESS_ID, id="businessId with a space"),
        pytest.param("businessId", "b" * 65, id="businessId too long"),
        pytest.param("businessId", None, id="businessId missing"),
        pytest.param("nonce", "n1=2", id="nonce with ="),
        pytest.param("nonce", "n 1", id="nonce with a space"),
        pytest.param("nonce", "nonce-é", id="nonce not ascii"),
        pytest.param("nonce", "n" * 129, id="nonce too long"),
        pytest.param("nonce", None, id="nonce missing"),
        pytest.param("timestamp", lambda: now_ms().translate(FULLWIDTH_DIGITS), id="timestamp in fullwidth digits"),
        pytest.param("timestamp", lambda: "+" + now_ms(), id="timestamp with a sign"),
        pytest.param("timestamp", lambda: now_ms() + ".0", id="timestamp with decimals"),
        pytest.param("timestamp", lambda: "0" * 7 + now_ms(), id="timestamp too long"),
        pytest.param("timestamp", None, id="timestamp missing"),
        pytest.param("signType", "sha256-rsa", id="signType in lowercase"),
        pytest.param("signType", "SHA256-RSA&x=1", id="signType with &"),
        pytest.param("sign", lambda: "%" * 344, id="sign with odd characters"),
        pytest.param("sign", lambda: "A" * 2000, id="sign too long"),
    ],
)
def test_a_header_outside_its_strict_shape_is_refused_before_anything_is_done(client, accepted_order, header, value):
    body = callback_body(accepted_order)
    headers = {"businessId": exchange_support.BUSINESS_ID, "nonce": uuid.uuid4().hex, "timestamp": now_ms()}
    if header == "signType":
        headers["signType"] = "SHA256-RSA"
    value = value() if callable(value) else value
    if value is None:
        del headers[header]
    elif header != "sign":
        headers[header] = value
    # Validly signed whatever the value (the vendor's rule, which string_to_sign now refuses to apply
    # to such values), so that only the header's shape can refuse it.
    vendor_string = "&".join(f"{name}={headers[name]}" for name in sorted(headers) if headers[name]) + body
    headers["sign"] = signing.sign_sha256_rsa(vendor_string, exchange_support.PLATFORM_PRIVATE_KEY)
    if header == "sign":
        headers["sign"] = value

    response = post(client, body, headers)

    assert response.status_code == 400
    assert RechargeOrder.objects.get(pk=accepted_order.pk).status == OrderStatus.ACCEPTED
    assert not CallbackNonce.objects.exists()
    stored = ProviderCall.objects.get(direction="callback")
    assert stored.response_status == 400 and stored.signature_valid is None and header in stored.error


def bst17_callback_payload(order, *, state: str, agt_phone: str, app_key: str) -> dict[str, str]:
    return {"agtPhone": agt_phone, "reqStreamId": order.client_reference, "state": state,
            "sign": bst17_signing.callback_sign(agt_phone, order.client_reference, state, app_key)}


def accepted_gift_card_order_of(account: str, product, clerk, distributor) -> RechargeOrder:
    product.merchant_account = account
    product.save(update_fields=["merchant_account"])
    order = order_create(distributor=distributor, product=product, actor=clerk)
    orders_place(ids=[order.pk], actor=clerk)
    RechargeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.ACCEPTED)
    return RechargeOrder.objects.get(pk=order.pk)


def test_a_valid_17bst_callback_of_one_account_moves_no_order_of_another(client, settings, clerk, distributor,
                                                                         gift_card_product):
    settings.PROVIDERS = with_second_accounts()
    order = accepted_gift_card_order_of("second", gift_card_product, clerk, distributor)
    before = money_and_state(order)
    payload = bst17_callback_payload(order, state="1", agt_phone=bst17_support.AGT_PHONE,
                                     app_key=bst17_support.APP_KEY)

    response = client.post("/callbacks/bst17/", data=payload)

    assert response.status_code == 404
    assert money_and_state(order) == before
    assert ProviderCall.objects.get(direction="callback", provider="bst17").response_status == 404


def test_a_17bst_callback_is_verified_with_the_keys_of_the_account_its_agent_phone_names(
    client, settings, clerk, distributor, gift_card_product
):
    settings.PROVIDERS = with_second_accounts()
    order = accepted_gift_card_order_of("second", gift_card_product, clerk, distributor)

    with_default_key = client.post("/callbacks/bst17/", data=bst17_callback_payload(
        order, state="1", agt_phone=SECOND_AGT_PHONE, app_key=bst17_support.APP_KEY))
    with_its_key = client.post("/callbacks/bst17/", data=bst17_callback_payload(
        order, state="1", agt_phone=SECOND_AGT_PHONE, app_key=SECOND_APP_KEY))

    assert with_default_key.status_code == 401
    assert with_its_key.status_code == 200 and with_its_key.content == b"success"
    assert RechargeOrder.objects.get(pk=order.pk).status == OrderStatus.FAILED
    assert prepaid_balance(order) == Decimal("1000.00")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("agtPhone", bst17_support.AGT_PHONE + " ", id="agtPhone with a space"),
        pytest.param("agtPhone", "+86" + bst17_support.AGT_PHONE, id="agtPhone with a sign"),
        pytest.param("reqStreamId", "R1&state=0", id="reqStreamId with odd characters"),
        pytest.param("reqStreamId", "R" * 65, id="reqStreamId too long"),
        pytest.param("state", "٠", id="state in arabic-indic digits"),
        pytest.param("sign", "z" * 32, id="sign not hex"),
    ],
)
def test_a_17bst_field_outside_its_strict_shape_is_refused(client, clerk, distributor, gift_card_product, field, value):
    order = accepted_gift_card_order_of("default", gift_card_product, clerk, distributor)
    payload = {"agtPhone": bst17_support.AGT_PHONE, "reqStreamId": order.client_reference, "state": "1", field: value}
    if field != "sign":
        payload["sign"] = bst17_signing.callback_sign(payload["agtPhone"], payload["reqStreamId"], payload["state"],
                                                      bst17_support.APP_KEY)

    response = client.post("/callbacks/bst17/", data=payload)

    assert response.status_code == 400
    assert RechargeOrder.objects.get(pk=order.pk).status == OrderStatus.ACCEPTED
    stored = ProviderCall.objects.get(direction="callback", provider="bst17")
    assert stored.signature_valid is None and field in stored.error
