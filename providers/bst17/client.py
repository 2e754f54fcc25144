"""Client of the 17bst charge platform: e-coupon purchases (card secrets), card queries, products, balance.

Every request is `POST {"appId": ..., "param": Base64(DES(source JSON, appKey))}`. The stored
request is the source JSON with `tradePwd` masked, never the opaque blob. Card PINs come back
DES-encrypted; they are decrypted into CardSecretData and masked in the stored answer.
"""

from __future__ import annotations

import datetime
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from django.db import models
from django.utils.translation import gettext

from providers.base import REDACTED, PreparedRequest, ProviderClient
from providers.bst17 import signing
from providers.config import account_settings, callback_account, callback_fields, setting_variable
from providers.exceptions import (
    InvalidRequest,
    OutcomeUnknown,
    ProviderMisconfigured,
    ProviderRejected,
    SignatureInvalid,
)
from providers.models import Provider
from providers.payload import answer_decimal, checked_text
from providers.results import CardSecretData, Outcome, ProviderResult

SETTINGS_PREFIX = "BST17"

PRODUCT_LIST_PATH = "/product/getProductList"
BALANCE_PATH = "/trade/queryAgtBalance"
ECOUPON_PATH = "/trade/ecoupon"
CARD_INFO_PATH = "/trade/getCardInfo"

# Inferred limits: the document gives none.
MAX_REQ_STREAM_ID_LENGTH = 32
MAX_PRODUCT_CODE_LENGTH = 18  # digits of a Java long
MAX_RECEIVE_URL_LENGTH = 255
MAX_RECEIVE_PHONE_LENGTH = 20


class Meaning(enum.Enum):
    SUCCEEDED = "succeeded"
    ACCEPTED = "accepted"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"  # a definite no to this request: ProviderRejected with the code
    # A no to this request that proves nothing about the order under its reference:
    # ProviderRejected with the code, not proving that nothing was carried out.
    REFUSED_MAYBE_DONE = "refused, maybe done"
    THROTTLED = "throttled"  # 1017: Bst17QueryTooFrequent, back off and query later


# The one table of 17bst status codes: (when placing an order, when querying one or reading data).
STATUS_TABLE: dict[int, tuple[Meaning, Meaning]] = {
    1000: (Meaning.SUCCEEDED, Meaning.SUCCEEDED),
    # On ecoupon a definite rejection; on getCardInfo the order's final state.
    1001: (Meaning.REJECTED, Meaning.FAILED),
    # "Exception, query the result". getCardInfo's own table calls 1003 "order not found, treat as
    # failed", but failing an order that may exist loses money: it stays UNKNOWN.
    1003: (Meaning.UNKNOWN, Meaning.UNKNOWN),
    1004: (Meaning.REJECTED, Meaning.REJECTED),  # wrong trade password
    1010: (Meaning.REJECTED, Meaning.REJECTED),  # insufficient balance
    1011: (Meaning.ACCEPTED, Meaning.ACCEPTED),  # processing
    1013: (Meaning.REJECTED, Meaning.REJECTED),  # agent not found
    # Not found right after submitting means not yet visible: still pending.
    1015: (Meaning.UNKNOWN, Meaning.ACCEPTED),
    # Duplicate reqStreamId refuses this request only: an earlier one with the same id may
    # exist (and have been paid for), so the order must be queried (getCardInfo), not failed.
    1016: (Meaning.REFUSED_MAYBE_DONE, Meaning.REJECTED),
    # Querying too often. On an order submission we cannot tell whether it was taken.
    1017: (Meaning.UNKNOWN, Meaning.THROTTLED),
    1018: (Meaning.FAILED, Meaning.FAILED),  # reversed
}


def status_meaning(status: Any, *, querying: bool) -> Meaning:
    try:
        code = int(str(status))
    except ValueError:
        return Meaning.UNKNOWN
    placing_meaning, querying_meaning = STATUS_TABLE.get(code, (Meaning.UNKNOWN, Meaning.UNKNOWN))
    return querying_meaning if querying else placing_meaning


_OUTCOME_OF_MEANING = {
    Meaning.SUCCEEDED: Outcome.SUCCEEDED,
    Meaning.ACCEPTED: Outcome.ACCEPTED,
    Meaning.FAILED: Outcome.FAILED,
    Meaning.UNKNOWN: Outcome.UNKNOWN,
}

# Inferred callback states (from a related platform with the same API): 0 success, 1 failed.
CALLBACK_STATE_OUTCOMES = {"0": Outcome.SUCCEEDED, "1": Outcome.FAILED}

ARRIVE_TYPES = {0: "slow", 1: "normal", 2: "fast"}


class Bst17QueryTooFrequent(ProviderRejected):
    """17bst status 1017: queried too often. Nothing is wrong with the order; query again later."""

    retry_safe = True
    proves_not_carried_out = False  # a refused query says nothing about the order asked about


@dataclass(frozen=True)
class Bst17Settings:
    """One merchant (agent) account of 17bst, read once from settings.PROVIDERS."""

    account: str
    base_url: str
    app_id: str
    agt_phone: str
    callback_url: str
    app_key: str = field(repr=False)
    trade_password: str = field(repr=False)
    card_key: str = field(repr=False)

    @classmethod
    def for_account(cls, account: str = "default") -> Bst17Settings:
        values = account_settings(
            SETTINGS_PREFIX, account, required=["BASE_URL", "APP_ID", "APP_KEY", "AGT_PHONE", "TRADE_PASSWORD"]
        )
        app_key = str(values["APP_KEY"])
        # The PIN key is configured apart in public clients; it is often the appKey itself.
        card_key = values.get("CARD_KEY") or app_key
        for name, key in (("APP_KEY", app_key), ("CARD_KEY", card_key)):
            if len(key.encode("utf-8")) < signing.DES_KEY_LENGTH:
                raise ProviderMisconfigured(
                    gettext("%(variable)s must be at least 8 characters long.")
                    % {"variable": setting_variable(SETTINGS_PREFIX, account, name)},
                    provider=Provider.BST17,
                )
        return cls(
            account=account,
            base_url=str(values["BASE_URL"]).rstrip("/"),
            app_id=str(values["APP_ID"]),
            agt_phone=str(values["AGT_PHONE"]),
            callback_url=values.get("CALLBACK_URL") or "",
            app_key=app_key,
            trade_password=str(values["TRADE_PASSWORD"]),
            card_key=card_key,
        )

    @property
    def trade_password_digest(self) -> str:
        return signing.trade_password_digest(self.trade_password)


@dataclass(frozen=True)
class Bst17Product:
    code: str
    business_code: str
    business_name: str
    arrive_type: int | None
    face_value: Decimal | None
    price: Decimal | None
    discount: Decimal | None  # a percentage: 96.89 means 96.89 % of the price
    province_id: str
    province: str
    city_id: str
    city: str

    @property
    def arrival(self) -> str:
        return ARRIVE_TYPES.get(self.arrive_type, "unknown") if self.arrive_type is not None else "unknown"


@dataclass(frozen=True)
class Bst17Balance:
    credit: Decimal
    freeze: Decimal
    profit: Decimal


@dataclass(frozen=True)
class Bst17Callback:
    """A verified status callback, of one merchant account (it may move only that account's orders)."""

    agt_phone: str
    req_stream_id: str
    status: Outcome
    state: str
    merchant_account: str
    raw: dict[str, Any] = field(repr=False)


# Inferred shapes of the callback's fields (the vendor publishes none): the signature concatenates
# them with no separator, so each keeps to its own characters and length before anything else.
CALLBACK_FIELD_SHAPES = {
    "agtPhone": re.compile(r"[0-9]{1,20}"),
    "reqStreamId": re.compile(r"[A-Za-z0-9_-]{1,64}"),
    "state": re.compile(r"[0-9]{1,4}"),
    "sign": re.compile(r"[0-9A-Fa-f]{32}"),
}


def read_callback_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """A callback's fields by name, each "" when absent; InvalidRequest for any outside its shape.

    A missing sign is left to the signature check.
    """
    return callback_fields(
        payload, CALLBACK_FIELD_SHAPES, required=("agtPhone", "reqStreamId", "state"), provider=Provider.BST17
    )


_CARD_PWD_VALUE = re.compile(r'("cardPwd"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)')


def mask_card_pins(text: str) -> str:
    """Replace every cardPwd value in a raw answer, even one that is not valid JSON."""
    return _CARD_PWD_VALUE.sub(lambda match: f'{match.group(1)}"{REDACTED}"', text)


@dataclass(frozen=True, kw_only=True)
class EcouponPurchase:
    """A purchase of e-coupons (trade/ecoupon). Checked on construction: an instance is sendable."""

    product_code: int | str  # an Int on the wire; normalized to int
    req_stream_id: str  # our order number, never reused: the client reference
    quantity: int  # `amount` on the wire: the number of cards
    receive_url: str = ""  # where 17bst sends the status callback
    receive_phone: str = ""

    def __post_init__(self) -> None:
        def normalize(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        code = self.product_code
        if isinstance(code, int) and not isinstance(code, bool):
            code = str(code)
        code = checked_text(code, field="product_code", label=gettext("Product code"), max_length=MAX_PRODUCT_CODE_LENGTH)
        # isdigit() would also take other scripts' digits ("٦٩"), which int() reads as 69.
        if not (code.isascii() and code.isdigit()):
            raise InvalidRequest(
                gettext("The 17bst product code must be a number."), field="product_code", provider=Provider.BST17
            )
        normalize("product_code", int(code))
        normalize(
            "req_stream_id",
            checked_text(
                self.req_stream_id, field="req_stream_id", label=gettext("Client reference"),
                max_length=MAX_REQ_STREAM_ID_LENGTH,
            ),
        )
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 1:
            raise InvalidRequest(
                gettext("The quantity must be a whole number of at least 1."), field="quantity", provider=Provider.BST17
            )
        normalize(
            "receive_url",
            checked_text(
                self.receive_url, field="receive_url", label=gettext("Callback address"),
                max_length=MAX_RECEIVE_URL_LENGTH, required=False,
            ),
        )
        normalize(
            "receive_phone",
            checked_text(
                self.receive_phone, field="receive_phone", label=gettext("Receiving phone"),
                max_length=MAX_RECEIVE_PHONE_LENGTH, required=False,
            ),
        )

    def source(self, *, agt_phone: str, trade_pwd: str) -> dict[str, Any]:
        """The source JSON's fields in the vendor's documented order, optional ones only when given."""
        source: dict[str, Any] = {
            "agtPhone": agt_phone,
            "productCode": self.product_code,
            "reqStreamId": self.req_stream_id,
            "amount": self.quantity,
            "tradePwd": trade_pwd,
        }
        if self.receive_url:
            source["receiveUrl"] = self.receive_url
        if self.receive_phone:
            source["receivePhone"] = self.receive_phone
        return source


@dataclass(frozen=True, kw_only=True)
class CardInfoQuery:
    """A query of an earlier purchase and its cards (trade/getCardInfo). Checked on construction."""

    req_stream_id: str

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "req_stream_id",
            checked_text(
                self.req_stream_id, field="req_stream_id", label=gettext("Client reference"),
                max_length=MAX_REQ_STREAM_ID_LENGTH,
            ),
        )

    def source(self, *, agt_phone: str, trade_pwd: str) -> dict[str, Any]:
        return {"reqStreamId": self.req_stream_id, "agtPhone": agt_phone, "tradePwd": trade_pwd}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _expiry(value: Any) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


class Bst17Client(ProviderClient):
    provider = Provider.BST17
    settings_class = Bst17Settings

    def secret_values(self) -> list[str]:
        config = self.config
        return [config.app_key, config.trade_password, config.trade_password_digest, config.card_key]

    def redact_response(self, text: str) -> str:
        return mask_card_pins(text)

    # --- operations -------------------------------------------------------------------------

    def get_product_list(self) -> list[Bst17Product]:
        operation = "getProductList"
        request = self._prepare(operation, PRODUCT_LIST_PATH, {"agtPhone": self.config.agt_phone})

        def parse(response: requests.Response) -> ProviderResult:
            payload = self._read(response, operation)
            products = [self._product(row) for row in payload.get("data") or []]
            return ProviderResult(outcome=Outcome.SUCCEEDED, code=str(payload["status"]), data={"products": products})

        return list(self.execute(request, parse).data["products"])

    def query_balance(self) -> Bst17Balance:
        operation = "queryAgtBalance"
        source = {"agtPhone": self.config.agt_phone, "tradePwd": self.config.trade_password_digest}
        request = self._prepare(operation, BALANCE_PATH, source)

        def parse(response: requests.Response) -> ProviderResult:
            payload = self._read(response, operation)
            data = payload.get("data") or {}
            balance = Bst17Balance(
                credit=Decimal(str(data["credit"])),
                freeze=Decimal(str(data.get("freeze") or 0)),
                profit=Decimal(str(data.get("profit") or 0)),
            )
            return ProviderResult(outcome=Outcome.SUCCEEDED, code=str(payload["status"]), data={"balance": balance})

        return self.execute(request, parse).data["balance"]

    def ecoupon(self, request: EcouponPurchase, *, record: models.Model | None = None) -> ProviderResult:
        """Buy cards; the reqStreamId is the client reference.

        SUCCEEDED carries the decrypted cards; ACCEPTED means fetch them later (getCardInfo).
        """
        operation = "ecoupon"
        prepared = self.prepare_ecoupon(request)

        def parse(response: requests.Response) -> ProviderResult:
            return self._order_result(response, operation, request.req_stream_id, querying=False, quantity=request.quantity)

        return self.execute(prepared, parse, record=record, client_reference=request.req_stream_id)

    def prepare_ecoupon(self, request: EcouponPurchase) -> PreparedRequest:
        """The encrypted request, byte for byte."""
        return self._prepare("ecoupon", ECOUPON_PATH, request.source(**self._agent_fields()))

    def get_card_info(self, request: CardInfoQuery, *, record: models.Model | None = None) -> ProviderResult:
        """The state of an earlier ecoupon order, with its cards once it has succeeded."""
        operation = "getCardInfo"
        prepared = self.prepare_get_card_info(request)

        def parse(response: requests.Response) -> ProviderResult:
            return self._order_result(response, operation, request.req_stream_id, querying=True, quantity=None)

        return self.execute(prepared, parse, record=record, client_reference=request.req_stream_id)

    def prepare_get_card_info(self, request: CardInfoQuery) -> PreparedRequest:
        return self._prepare("getCardInfo", CARD_INFO_PATH, request.source(**self._agent_fields()))

    @classmethod
    def for_callback(cls, payload: Mapping[str, Any]) -> Bst17Client:
        """The client of the merchant account whose agtPhone a callback carries.

        InvalidRequest for a field outside its shape; SignatureInvalid when no account has the
        agtPhone; ProviderMisconfigured when several have it or the account is incomplete.
        """
        agt_phone = read_callback_fields(payload)["agtPhone"]
        client = cls(merchant_account=callback_account(SETTINGS_PREFIX, "AGT_PHONE", agt_phone))
        _ = client.config  # read now: a callback of an incomplete account is refused before it is verified
        return client

    def verify_callback(self, payload: Mapping[str, Any]) -> Bst17Callback:
        """Check a status callback of this merchant account (form fields or JSON object: agtPhone, reqStreamId, state, sign).

        Inferred for 17bst from a related platform with the identical API; answer it with `success`.
        """
        fields = read_callback_fields(payload)
        agt_phone, stream_id, state = fields["agtPhone"], fields["reqStreamId"], fields["state"]
        valid = bool(fields["sign"]) and signing.verify_callback_sign(
            agt_phone, stream_id, state, self.config.app_key, fields["sign"]
        )
        if not valid or agt_phone != self.config.agt_phone:
            raise SignatureInvalid(
                gettext("The 17bst callback signature does not verify."), provider=self.provider, operation="callback"
            )
        return Bst17Callback(
            agt_phone=agt_phone,
            req_stream_id=stream_id,
            status=CALLBACK_STATE_OUTCOMES.get(state, Outcome.UNKNOWN),
            state=state,
            merchant_account=self.merchant_account,
            raw=dict(payload),
        )

    # --- building and reading ---------------------------------------------------------------

    def _agent_fields(self) -> dict[str, str]:
        """The agent's own fields of an order or query: who asks, and the trade password's digest."""
        return {"agt_phone": self.config.agt_phone, "trade_pwd": self.config.trade_password_digest}

    def _prepare(self, operation: str, path: str, source: dict[str, Any]) -> PreparedRequest:
        source_json = json.dumps(source, ensure_ascii=False, separators=(",", ":"))
        body = json.dumps(
            {"appId": self.config.app_id, "param": signing.des_encrypt(source_json, self.config.app_key)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        # Stored for audit: what was encrypted, with the trade password digest masked.
        audit_source = {**source, "tradePwd": REDACTED} if "tradePwd" in source else source
        redacted = json.dumps({"appId": self.config.app_id, "source": audit_source}, ensure_ascii=False, separators=(",", ":"))
        return PreparedRequest(
            operation=operation,
            method="POST",
            url=self.config.base_url + path,
            headers={"Content-Type": "application/json;charset=UTF-8"},
            body=body.encode("utf-8"),
            redacted_body=redacted,
        )

    @staticmethod
    def _envelope(response: requests.Response) -> dict[str, Any]:
        payload = json.loads(response.content.decode("utf-8"), parse_float=Decimal)
        if not isinstance(payload, dict) or "status" not in payload:
            raise ValueError("not the platform's answer envelope")
        return payload

    def _read(self, response: requests.Response, operation: str) -> dict[str, Any]:
        """The answer of a read-only call (products, balance); anything but success raises."""
        payload = self._envelope(response)
        meaning = status_meaning(payload["status"], querying=True)
        if meaning is not Meaning.SUCCEEDED:
            self._raise_for(meaning, payload, operation)
            raise OutcomeUnknown(
                _text(payload.get("msg")) or gettext("17bst answered with an unknown status."),
                provider=self.provider,
                operation=operation,
            )
        return payload

    def _raise_for(self, meaning: Meaning, payload: dict[str, Any], operation: str) -> None:
        code, message = _text(payload.get("status")), _text(payload.get("msg"))
        if meaning is Meaning.THROTTLED:
            raise Bst17QueryTooFrequent(
                message or gettext("17bst is being queried too often; try again later."),
                code=code,
                provider=self.provider,
                operation=operation,
            )
        if meaning in (Meaning.REJECTED, Meaning.FAILED, Meaning.REFUSED_MAYBE_DONE):
            raise ProviderRejected(
                message or gettext("17bst refused the request."), code=code, provider=self.provider, operation=operation,
                proves_not_carried_out=meaning is not Meaning.REFUSED_MAYBE_DONE,
            )

    def _order_result(
        self, response: requests.Response, operation: str, stream_id: str, *, querying: bool, quantity: int | None
    ) -> ProviderResult:
        payload = self._envelope(response)
        meaning = status_meaning(payload["status"], querying=querying)
        if meaning in (Meaning.REJECTED, Meaning.REFUSED_MAYBE_DONE, Meaning.THROTTLED):
            self._raise_for(meaning, payload, operation)
        echoed = payload.get("reqStreamId")
        if echoed not in (None, "") and str(echoed) != stream_id:
            raise ValueError("answer is about another reqStreamId")
        cards = self._cards(payload.get("data"), operation) if meaning is Meaning.SUCCEEDED else ()
        outcome = _OUTCOME_OF_MEANING[meaning]
        if meaning is Meaning.SUCCEEDED and not cards:
            # "1000 交易成功 等待回调": taken, cards to be fetched with getCardInfo.
            outcome = Outcome.ACCEPTED
        elif meaning is Meaning.SUCCEEDED and quantity is not None and len(cards) != quantity:
            # Some cards but not the number bought: keep them and let a person look.
            outcome = Outcome.UNKNOWN
        return ProviderResult(
            outcome=outcome,
            code=_text(payload.get("status")),
            message=_text(payload.get("msg")),
            upstream_reference=_text(payload.get("orderNo")),
            client_reference=stream_id,
            card_secrets=cards,
            data=json.loads(mask_card_pins(json.dumps(payload, default=str, ensure_ascii=False))),
        )

    def _cards(self, rows: Any, operation: str) -> tuple[CardSecretData, ...]:
        cards = []
        for row in rows or []:
            try:
                pin = signing.des_decrypt(_text(row["cardPwd"]), self.config.card_key)
            except ValueError:
                # The order went through upstream; the cards can be fetched again with the right key.
                raise ProviderMisconfigured(
                    gettext("A card PIN could not be decrypted: check %(variable)s.")
                    % {"variable": setting_variable(SETTINGS_PREFIX, self.merchant_account, "CARD_KEY")},
                    provider=self.provider,
                    operation=operation,
                ) from None
            cards.append(
                CardSecretData(card_number=_text(row.get("cardNum")), pin=pin, expires_at=_expiry(row.get("expiretime")))
            )
        return tuple(cards)

    @staticmethod
    def _product(row: dict[str, Any]) -> Bst17Product:
        return Bst17Product(
            code=_text(row["productCode"]),
            business_code=_text(row.get("businessCode")),
            business_name=_text(row.get("businessName")),
            arrive_type=int(row["arriveType"]) if row.get("arriveType") is not None else None,
            face_value=answer_decimal(row.get("tradeFace")),
            price=answer_decimal(row.get("price")),
            discount=answer_decimal(row.get("discount")),
            province_id=_text(row.get("provinceId")),
            province=_text(row.get("province")),
            city_id=_text(row.get("cityId")),
            city=_text(row.get("city")),
        )
