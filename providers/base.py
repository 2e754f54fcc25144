"""The one transport every vendor client uses (docs/style.md, rule 1).

The base owns the HTTP session, timeouts, the call log and the mapping of transport failures
to the exception tree. A vendor client only builds and signs the request (a PreparedRequest)
and reads the answer (a parse function returning a ProviderResult or raising ProviderRejected).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import models
from django.utils import timezone
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry

from providers.exceptions import (
    Consequence,
    OutcomeUnknown,
    ProviderError,
    ProviderNotReached,
    consequence_of,
)
from providers.models import ProviderCall
from providers.results import Outcome, ProviderResult

logger = logging.getLogger(__name__)

REDACTED = "***"
_QUERY_STRING = re.compile(r"\?[^\s'\"]*")


@dataclass
class PreparedRequest:
    """Exactly what goes on the wire, plus what may be stored of it."""

    operation: str
    method: str
    url: str
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # multipart form fields (BEST GERP); sent as form-data parts with no filename
    form_fields: dict[str, str] | None = None
    # what is stored in the call log: the request with secrets and PINs replaced
    redacted_body: str = ""
    redacted_params: dict[str, str] | None = None


@functools.lru_cache(maxsize=64)
def _environment_proxies(origin: str) -> dict[str, str]:
    return get_environ_proxies(origin)


class _Session(requests.Session):
    """A requests session that works out the proxy environment once per origin.

    requests re-reads it on every request (a scan of the environment and of the no_proxy list)
    and merges it with the session's settings through checks against typing protocols: work done
    on every call for an answer that never changes. Neither the environment of a running process
    nor this session's settings change, so the proxies for an origin are kept for the process and
    the merged settings for the session. A call with explicit proxies goes through requests' own
    merge unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self._settings_by_origin: dict[tuple[str, Any, Any, Any], dict[str, Any]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if not self.trust_env or proxies:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        key = (origin, stream, verify, cert)
        merged = self._settings_by_origin.get(key)
        if merged is None:
            proxies = dict(_environment_proxies(origin))
            if verify is True or verify is None:
                verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
            merged = self._settings_by_origin[key] = {
                "proxies": merge_setting(proxies, self.proxies),
                "stream": merge_setting(stream, self.stream),
                "verify": merge_setting(verify, self.verify),
                "cert": merge_setting(cert, self.cert),
            }
        return {**merged, "proxies": dict(merged["proxies"])}


def _session() -> requests.Session:
    session = _Session()
    # Retry only failures to connect: nothing was sent, so a retry cannot duplicate anything.
    # Reads, statuses and everything after the first byte are never retried.
    retry = Retry(total=None, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.2, allowed_methods=None)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret in text (a last line of defence behind redaction)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def _record_label(record: models.Model | None) -> tuple[str, str]:
    if record is None:
        return "", ""
    return record._meta.label_lower, str(record.pk)


class AccountSettings(Protocol):
    """A vendor's frozen settings dataclass (docs/style.md, rule 3): one merchant account's credentials."""

    @classmethod
    def for_account(cls, merchant_account: str) -> AccountSettings: ...


class ProviderClient:
    """Base of every vendor client. Subclasses set `provider` and `settings_class`, and list their `secret_values`."""

    provider: str = ""
    settings_class: ClassVar[type[AccountSettings]]

    def __init__(
        self,
        *,
        merchant_account: str = "default",
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: uuid.uuid4().hex,
        call_log: Callable[[ProviderCall], None] | None = None,
    ) -> None:
        self.merchant_account = merchant_account
        self._session = session
        self.clock = clock
        self.nonce = nonce
        # Where a finished call goes: by default it is inserted at once. A caller that sends from
        # threads with no database connection of their own takes the rows and writes them itself,
        # before it acts on any of their answers (orders.services._ask_together).
        self.call_log = call_log

    @functools.cached_property
    def config(self) -> Any:
        """The merchant account's settings, read on first use rather than when the client is made.

        So making a client never fails: a missing or unusable variable raises ProviderMisconfigured
        from the call that needs it, before anything is sent, inside the caller's handling of that
        one record (consequence_of: nothing was carried out), not around a whole job of them.
        """
        return self.settings_class.for_account(self.merchant_account)

    @property
    def session(self) -> requests.Session:
        # Made on first use: a client that only verifies callbacks never sends anything.
        if self._session is None:
            self._session = _session()
        return self._session

    # What must never be stored or logged for this client (app secrets, keys, passwords).
    def secret_values(self) -> list[str]:
        return []

    def execute(
        self,
        request: PreparedRequest,
        parse: Callable[[requests.Response], ProviderResult],
        *,
        record: models.Model | None = None,
        client_reference: str = "",
    ) -> ProviderResult:
        """Send a prepared request once, record it, and return the parsed result or raise.

        The call is written to the log once, when it is over, whatever its fate: one INSERT per
        call instead of an INSERT before sending and an UPDATE after, on the busiest table there
        is (or handed to `call_log`, before the result is returned or the error raised). A process
        killed while waiting leaves no row, but its order is left SUBMITTING, and reconciliation
        queries it (and logs that query).
        """
        secrets = self.secret_values()
        record_type, record_id = _record_label(record)
        call = ProviderCall(
            provider=self.provider,
            merchant_account=self.merchant_account,
            operation=request.operation,
            record_type=record_type,
            record_id=record_id,
            client_reference=client_reference,
            method=request.method,
            url=request.url,
            request_headers=json.loads(scrub(json.dumps(self._stored_headers(request)), secrets)),
            request_body=scrub(request.redacted_body, secrets),  # created_at: now, as the request leaves
        )
        started = time.monotonic()
        response = None
        try:
            response = self._send(request)
            if response.status_code >= 500:
                raise OutcomeUnknown(
                    f"HTTP {response.status_code} from upstream", provider=self.provider, operation=request.operation
                )
            try:
                result = parse(response)
            except ProviderError:
                raise
            except Exception as err:
                # An answer we cannot read: the request may well have been carried out.
                raise OutcomeUnknown(
                    f"Unreadable answer: {err}", provider=self.provider, operation=request.operation
                ) from err
        except ProviderError as err:
            err.sent = response is not None or not isinstance(err, ProviderNotReached)
            self._finish(call, started, response, secrets, outcome=self._outcome_of(err), error=err)
            raise
        except BaseException as err:
            # A bug or an interrupt between sending and reading: the attempt stays on record.
            self._finish(call, started, response, secrets, outcome=Outcome.UNKNOWN, error=err)
            raise
        self._finish(call, started, response, secrets, outcome=result.outcome, code=result.code)
        return result

    def _stored_headers(self, request: PreparedRequest) -> dict[str, Any]:
        stored: dict[str, Any] = dict(request.headers)
        if request.redacted_params is not None:
            stored["query"] = request.redacted_params
        return stored

    def _send(self, request: PreparedRequest) -> requests.Response:
        files = {k: (None, v) for k, v in request.form_fields.items()} if request.form_fields is not None else None
        session = self.session
        try:
            # Prepared here step by step and handed to Session.send, rather than through
            # Session.request, which would also merge cookies, netrc credentials and hooks into
            # every call and build a cookie header: these APIs use none of them, and that work is a
            # large share of requests' own CPU per call. The request's headers are laid over the
            # session's, as requests' merge does (neither ever holds None).
            headers = CaseInsensitiveDict(session.headers)
            headers.update(request.headers)
            outgoing = requests.PreparedRequest()
            outgoing.prepare_method(request.method)
            outgoing.prepare_url(request.url, request.params)
            outgoing.prepare_headers(headers)
            outgoing.prepare_body(request.body, files)
            outgoing.prepare_auth(None, request.url)
            outgoing.prepare_hooks({})
            return session.send(
                outgoing,
                timeout=(settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT),
                allow_redirects=False,
                **session.merge_environment_settings(outgoing.url, {}, None, None, None),
            )
        except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.InvalidURL) as err:
            raise ProviderNotReached(self._describe(err), provider=self.provider, operation=request.operation) from err
        except requests.exceptions.ConnectionError as err:
            if _failed_before_sending(err):
                raise ProviderNotReached(self._describe(err), provider=self.provider, operation=request.operation) from err
            raise OutcomeUnknown(self._describe(err), provider=self.provider, operation=request.operation) from err
        except requests.exceptions.RequestException as err:
            # Read timeouts and broken answers: the bytes left, the outcome is not known.
            raise OutcomeUnknown(self._describe(err), provider=self.provider, operation=request.operation) from err

    def _describe(self, err: Exception) -> str:
        """A transport error's text without query strings or secrets: it is logged and stored.

        requests puts the full URL in its messages, and some vendors (Wangdiantong) sign with
        credentials in the query string.
        """
        return scrub(_QUERY_STRING.sub("?…", str(err)), self.secret_values())

    @staticmethod
    def _outcome_of(err: ProviderError) -> str:
        return {
            Consequence.SEND_AGAIN: "",  # nothing happened upstream
            Consequence.NOT_CARRIED_OUT: Outcome.FAILED,
            Consequence.MAYBE_CARRIED_OUT: Outcome.UNKNOWN,
        }[consequence_of(err)]

    def _finish(self, call, started, response, secrets, *, outcome, code="", error=None) -> None:
        call.latency_ms = int((time.monotonic() - started) * 1000)
        call.finished_at = timezone.now()
        call.outcome = outcome
        call.upstream_code = getattr(error, "code", "") or code
        call.error = scrub(f"{type(error).__name__}: {error}", secrets) if error else ""
        if response is not None:
            call.response_status = response.status_code
            call.response_body = scrub(self.redact_response(response.text), secrets)
        if self.call_log is not None:
            self.call_log(call)
            return
        call.insert()
        logger.info(
            "%s %s -> %s (%s ms) call #%s", self.provider, call.operation, outcome or "not sent", call.latency_ms, call.pk
        )

    def redact_response(self, text: str) -> str:
        """Remove what must not be stored from a raw answer (vendors with PINs override this)."""
        return text


def _failed_before_sending(err: requests.exceptions.ConnectionError) -> bool:
    """True when the connection itself failed (refused, DNS), so no byte of the request left."""
    from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

    reason = err.args[0] if err.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (NewConnectionError, NameResolutionError))
