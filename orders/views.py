"""Status callbacks from the upstreams: verified, stored raw, applied idempotently, answered.

The redemption platform retries a callback up to nine times; only the first delivery may change
an order. Each request is stored in the call log (direction: callback) whatever its fate, in one
INSERT once its answer is known.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orders.services import CallbackEffect, bst17_callback_apply, exchange_callback_apply
from providers.base import scrub
from providers.exceptions import ProviderError, ProviderMisconfigured, SignatureInvalid
from providers.models import CallDirection, Provider, ProviderCall
from providers.results import Outcome

logger = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024
# Inferred, like the platform's own request check: a callback older than this is refused.
CALLBACK_MAX_AGE_SECONDS = 300


def _store(request: HttpRequest, provider: str, body: bytes) -> ProviderCall:
    """The call-log row of this callback, written by `_finish` (or by `_stored_whatever_happens`)."""
    headers = {
        name: value for name, value in request.headers.items()
        if name.lower() in ("businessid", "nonce", "timestamp", "sign", "signtype", "content-type")
    }
    return ProviderCall(
        provider=provider,
        operation="callback",
        direction=CallDirection.CALLBACK,
        method=request.method,
        url=request.build_absolute_uri()[:500],
        request_headers=headers,
        request_body=body.decode("utf-8", errors="replace")[:MAX_CALLBACK_BYTES],
    )


def _finish(call: ProviderCall, status: int, answer: str, *, valid: bool | None, error: str = "",
            outcome: str = "", reference: str = "", secrets=()) -> HttpResponse:
    call.response_status = status
    call.response_body = answer
    call.signature_valid = valid
    call.error = scrub(error, secrets)[:2000]
    call.outcome = outcome
    call.client_reference = reference[:64]
    call.finished_at = timezone.now()
    call.insert()
    return HttpResponse(answer, status=status, content_type="text/plain; charset=utf-8")


def _body(request: HttpRequest) -> bytes | None:
    length = int(request.headers.get("Content-Length") or 0)
    if length > MAX_CALLBACK_BYTES:
        return None
    body = request.body
    return None if len(body) > MAX_CALLBACK_BYTES else body


def _stored_whatever_happens(call: ProviderCall, answer: Callable[[], HttpResponse]) -> HttpResponse:
    """Run `answer`; if it breaks, the delivery is still written to the call log before the error goes on."""
    try:
        return answer()
    except Exception as err:
        if call.pk is None:
            _finish(call, 500, "server error", valid=call.signature_valid, error=f"{type(err).__name__}: {err}")
        raise


@csrf_exempt
@require_POST
def exchange_callback(request: HttpRequest) -> HttpResponse:
    body = _body(request)
    if body is None:
        return HttpResponse("request too large", status=413, content_type="text/plain")
    call = _store(request, Provider.EXCHANGE, body)
    return _stored_whatever_happens(call, lambda: _exchange_answer(request, call, body))


def _refusal(call: ProviderCall, err: ProviderError, client) -> HttpResponse:
    """The answer to a callback that was not verified: no order was looked up, no nonce taken, nothing changed."""
    secrets = client.secret_values() if client is not None else ()
    if isinstance(err, SignatureInvalid):
        return _finish(call, 401, "invalid signature", valid=False, error=str(err), secrets=secrets)
    if isinstance(err, ProviderMisconfigured):
        # Our fault, not the sender's: the platform retries, and a retry after the fix goes through.
        return _finish(call, 503, "misconfigured", valid=None, error=str(err), secrets=secrets)
    return _finish(call, 400, "bad request", valid=None, error=str(err), secrets=secrets)


def _exchange_answer(request: HttpRequest, call: ProviderCall, body: bytes) -> HttpResponse:
    from providers.exchange.client import ExchangeClient

    # Verified as the account it names (businessId) with that account's keys and sign type only.
    client = None
    try:
        client = ExchangeClient.for_callback(request.headers)
        callback = client.verify_callback(request.headers, body)
    except ProviderError as err:
        return _refusal(call, err, client)
    call.signature_valid = True
    if abs(time.time() - callback.timestamp_ms / 1000) > CALLBACK_MAX_AGE_SECONDS:
        return _finish(call, 400, "stale timestamp", valid=True, error="timestamp outside the allowed window",
                       reference=callback.biz_code)
    try:
        effect = exchange_callback_apply(callback=callback, nonce=callback.nonce)
    except ValidationError as err:
        return _finish(call, 404, "unknown order", valid=True, error="; ".join(err.messages),
                       reference=callback.biz_code)
    if effect == CallbackEffect.REPLAYED:
        return _finish(call, 409, "replayed nonce", valid=True, error="nonce already used", reference=callback.biz_code)
    # SUCCESS tells the platform to stop retrying, whether this delivery or an earlier one applied it.
    return _finish(call, 200, "SUCCESS", valid=True, outcome=callback.status, reference=callback.biz_code,
                   error="" if effect == CallbackEffect.CHANGED else "already applied")


@csrf_exempt
@require_POST
def bst17_callback(request: HttpRequest) -> HttpResponse:
    if int(request.headers.get("Content-Length") or 0) > MAX_CALLBACK_BYTES:
        return HttpResponse("request too large", status=413, content_type="text/plain")
    # 17bst posts form fields (or, on some accounts, JSON); Django parses forms, multipart included.
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        payload = request.POST.dict()
        call = _store(request, Provider.BST17, urlencode(payload).encode())
    else:
        body = _body(request)
        if body is None:
            return HttpResponse("request too large", status=413, content_type="text/plain")
        call = _store(request, Provider.BST17, body)
        try:
            payload = json.loads(body.decode("utf-8"))
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError as err:
            return _finish(call, 400, "bad request", valid=None, error=f"unreadable body: {err}")
    return _stored_whatever_happens(call, lambda: _bst17_answer(call, payload))


def _bst17_answer(call: ProviderCall, payload: dict) -> HttpResponse:
    from providers.bst17.client import Bst17Client

    # Verified as the account it names (agtPhone) with that account's key only.
    client = None
    try:
        client = Bst17Client.for_callback(payload)
        callback = client.verify_callback(payload)
    except ProviderError as err:
        return _refusal(call, err, client)
    call.signature_valid = True
    if callback.status not in (Outcome.SUCCEEDED, Outcome.FAILED):
        return _finish(call, 400, "unknown state", valid=True, error=f"state {callback.state!r}",
                       reference=callback.req_stream_id)
    try:
        bst17_callback_apply(req_stream_id=callback.req_stream_id, outcome=callback.status,
                             merchant_account=callback.merchant_account)
    except ValidationError as err:
        return _finish(call, 404, "unknown order", valid=True, error="; ".join(err.messages),
                       reference=callback.req_stream_id)
    return _finish(call, 200, "success", valid=True, outcome=callback.status, reference=callback.req_stream_id)
