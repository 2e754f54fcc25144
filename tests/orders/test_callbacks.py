"""Status callbacks: verified, replay-proof, stored raw, idempotent, answered as the vendors expect."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory
from django.urls import reverse
from pghistory.models import Events

from config.provider_settings import provider_accounts
from orders.models import OrderStatus, RechargeOrder
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
