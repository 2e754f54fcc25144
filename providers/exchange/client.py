"""Client of the redemption platform (兑换系统) open API.

Direct charges (VIPCharge, batch) are only accepted by the answer; the final status arrives by
signed callback (verify_callback) or by querying order/info.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from django.db import models
from django.utils.translation import gettext

from providers.base import PreparedRequest, ProviderClient
from providers.config import account_settings, callback_account, callback_fields, setting_variable
from providers.exceptions import InvalidRequest, ProviderMisconfigured, ProviderRejected, SignatureInvalid
from providers.exchange import signing
from providers.models import Provider
from providers.payload import answer_decimal, checked_money, checked_text, compact_json
from providers.results import Outcome, ProviderResult

SETTINGS_PREFIX = "EXCHANGE"

VIP_CHARGE_PATH = "/v1/openapi/order/VIPCharge"
BATCH_PATH = "/v1/openapi/order/batch"
ORDER_INFO_PATH = "/v1/openapi/order/info"

# Inferred limits: the documents give no lengths; these keep obviously broken input home.
MAX_CODE_LENGTH = 64
MAX_ACCOUNT_LENGTH = 128
MAX_MOBILE_LENGTH = 20
MAX_ATTACH_VALUES_LENGTH = 512

# Inferred: the success value of the answer's `status` is not published (the documents'
# examples show random numbers). It is decided here and nowhere else.
SUCCESS_STATUS = 200


def is_success_status(status: Any) -> bool:
    return str(status) == str(SUCCESS_STATUS)


# Inferred: order/info and the status callback carry the order's state in `status`; the values
# are not published. Anything not listed is UNKNOWN, never success.
ORDER_STATUS_SUCCESS = "SUCCESS"
ORDER_STATUS_FAILED = "FAILED"
ORDER_STATUS_PROCESSING = "PROCESSING"
ORDER_STATUS_OUTCOMES: dict[str, Outcome] = {
    ORDER_STATUS_SUCCESS: Outcome.SUCCEEDED,
    ORDER_STATUS_FAILED: Outcome.FAILED,
    ORDER_STATUS_PROCESSING: Outcome.ACCEPTED,
}


def order_outcome(status: Any) -> Outcome:
    return ORDER_STATUS_OUTCOMES.get(str(status).upper(), Outcome.UNKNOWN)


# Callback nonces are stored to refuse replays (orders.CallbackNonce.nonce holds 128 characters).
MAX_NONCE_LENGTH = 128

# Inferred: the vendor publishes no shapes for the headers. Its example has 32 hex digits for
# businessId and nonce and 13 digits of milliseconds; these allow a little more, but never `&` or
# `=` (which would move text between headers in the string to sign), spaces, non-ASCII, or more
# than is stored. A callback with any other value is refused before anything else is done.
CALLBACK_HEADER_SHAPES = {
    "businessId": re.compile(r"[A-Za-z0-9_-]{1,64}"),
    "nonce": re.compile(r"[A-Za-z0-9_-]{1,%d}" % MAX_NONCE_LENGTH),  # noqa: UP031 - the braces are the pattern's
    "timestamp": re.compile(r"[0-9]{1,13}"),
    "signType": re.compile("|".join(re.escape(sign_type) for sign_type in signing.SIGN_TYPES)),
    # Base64 of an RSA signature (344 characters for 2048 bits, 684 for 4096) or 32 hex digits of MD5.
    "sign": re.compile(r"[A-Za-z0-9+/]{1,1024}={0,2}"),
}


def read_callback_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A callback's headers by name, each "" when absent; InvalidRequest for any outside its shape.

    businessId, nonce and timestamp are required; signType is optional (the platform's callbacks
    do not send it); a missing sign is left to the signature check.
    """
    return callback_fields(
        headers, CALLBACK_HEADER_SHAPES, required=("businessId", "nonce", "timestamp"), provider=Provider.EXCHANGE
    )


def _pem(value: str | None) -> str:
    # PEM keys often come through environment files as one line with literal "\n".
    return (value or "").replace("\\n", "\n").strip()


@dataclass(frozen=True)
class ExchangeSettings:
    """One merchant account of the redemption platform, read once from settings.PROVIDERS."""

    account: str
    base_url: str
    business_id: str
    merchant_id: str
    sign_type: str
    callback_url: str
    private_key_pem: str = field(repr=False)
    platform_public_key_pem: str = field(repr=False)
    md5_key: str = field(repr=False)

    @classmethod
    def for_account(cls, account: str = "default") -> ExchangeSettings:
        values = account_settings(SETTINGS_PREFIX, account, required=["BASE_URL", "BUSINESS_ID", "MERCHANT_ID"])
        sign_type = (values.get("SIGN_TYPE") or signing.SIGN_TYPE_RSA).upper()
        if sign_type not in signing.SIGN_TYPES:
            raise ProviderMisconfigured(
                gettext("%(variable)s must be SHA256-RSA or MD5.")
                % {"variable": setting_variable(SETTINGS_PREFIX, account, "SIGN_TYPE")},
                provider=Provider.EXCHANGE,
            )
        # It is signed in every request and names the account in every callback.
        business_id_shape = CALLBACK_HEADER_SHAPES["businessId"]
        if not business_id_shape.fullmatch(str(values["BUSINESS_ID"])):
            raise ProviderMisconfigured(
                gettext("%(variable)s does not have the expected form %(form)s.")
                % {"variable": setting_variable(SETTINGS_PREFIX, account, "BUSINESS_ID"), "form": business_id_shape.pattern},
                provider=Provider.EXCHANGE,
            )
        # The key of the chosen sign type is required; the getter names its variable when missing.
        account_settings(
            SETTINGS_PREFIX, account, required=["PRIVATE_KEY" if sign_type == signing.SIGN_TYPE_RSA else "MD5_KEY"]
        )
        return cls(
            account=account,
            base_url=str(values["BASE_URL"]).rstrip("/"),
            business_id=str(values["BUSINESS_ID"]),
            merchant_id=str(values["MERCHANT_ID"]),
            sign_type=sign_type,
            callback_url=values.get("CALLBACK_URL") or "",
            private_key_pem=_pem(values.get("PRIVATE_KEY")),
            platform_public_key_pem=_pem(values.get("PLATFORM_PUBLIC_KEY")),
            md5_key=values.get("MD5_KEY") or "",
        )


@dataclass(frozen=True)
class ExchangeCallback:
    """A verified order-status callback, of one merchant account (it may move only that account's orders)."""

    order_code: str
    biz_code: str
    status: Outcome
    upstream_status: str
    settlement_price: Decimal | None
    message: str
    merchant_account: str
    nonce: str
    timestamp_ms: int
    raw: dict[str, Any] = field(repr=False)


def _face_value_number(amount: Decimal) -> int | Decimal:
    # The documents' example sends a whole face value as an integer (795).
    return int(amount) if amount == amount.to_integral_value() else amount


@dataclass(frozen=True, kw_only=True)
class VipCharge:
    """One direct charge (order/VIPCharge). Checked on construction: an instance is sendable."""

    product_code: str
    account: str  # the account charged
    biz_code: str  # our order number, unique per order: the client reference
    mobile: str = ""

    def __post_init__(self) -> None:
        def normalize(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        normalize(
            "product_code",
            checked_text(self.product_code, field="product_code", label=gettext("Product code"), max_length=MAX_CODE_LENGTH),
        )
        normalize(
            "mobile",
            checked_text(
                self.mobile, field="mobile", label=gettext("Mobile number"), max_length=MAX_MOBILE_LENGTH, required=False
            ),
        )
        normalize(
            "account", checked_text(self.account, field="account", label=gettext("Account"), max_length=MAX_ACCOUNT_LENGTH)
        )
        normalize(
            "biz_code",
            checked_text(self.biz_code, field="biz_code", label=gettext("Client reference"), max_length=MAX_CODE_LENGTH),
        )

    def payload(self, *, merchant_id: str, business_id: str, callback_url: str) -> dict[str, Any]:
        """The body's fields in the vendor's documented order, optional ones only when given."""
        payload: dict[str, Any] = {"merchantId": merchant_id, "businessId": business_id, "productCode": self.product_code}
        if self.mobile:
            payload["mobile"] = self.mobile
        payload["account"] = self.account
        payload["bizCode"] = self.biz_code
        if callback_url:
            payload["callbackUrl"] = callback_url
        return payload


@dataclass(frozen=True, kw_only=True)
class BatchItem:
    """One line of a batch charge. Checked on construction, so a bad line is found with its own order."""

    biz_code: str  # our order number, unique per order
    account: str
    attach_values: str = ""
    spec: Decimal | None = None  # the face value, for products sold by face value

    def __post_init__(self) -> None:
        def normalize(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        normalize(
            "biz_code",
            checked_text(self.biz_code, field="biz_code", label=gettext("Client reference"), max_length=MAX_CODE_LENGTH),
        )
        normalize(
            "account", checked_text(self.account, field="account", label=gettext("Account"), max_length=MAX_ACCOUNT_LENGTH)
        )
        normalize(
            "attach_values",
            checked_text(
                self.attach_values, field="attach_values", label=gettext("Account attached values"),
                max_length=MAX_ATTACH_VALUES_LENGTH, required=False,
            ),
        )
        if self.spec is not None:
            normalize("spec", checked_money(self.spec, field="spec", label=gettext("Face value")))

    def row(self) -> dict[str, Any]:
        """The line of itemList, in the vendor's documented order."""
        row: dict[str, Any] = {"bizCode": self.biz_code, "account": self.account}
        if self.attach_values:
            row["accountAttachValues"] = self.attach_values
        if self.spec is not None:
            row["spec"] = _face_value_number(self.spec)
        return row


@dataclass(frozen=True, kw_only=True)
class BatchCharge:
    """A batch of direct charges of one product (order/batch). Checked on construction: an instance is sendable."""

    batch_biz_code: str  # our number for this request: one per request, never reused
    product_code: str
    items: Sequence[BatchItem]

    def __post_init__(self) -> None:
        def normalize(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        normalize(
            "batch_biz_code",
            checked_text(
                self.batch_biz_code, field="batch_biz_code", label=gettext("Batch number"), max_length=MAX_CODE_LENGTH
            ),
        )
        normalize(
            "product_code",
            checked_text(self.product_code, field="product_code", label=gettext("Product code"), max_length=MAX_CODE_LENGTH),
        )
        items = self.items
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not all(
            isinstance(item, BatchItem) for item in items
        ):
            raise InvalidRequest(
                gettext("The items of a batch must be batch items."), field="items", provider=Provider.EXCHANGE
            )
        if not items:
            raise InvalidRequest(gettext("A batch needs at least one item."), field="items", provider=Provider.EXCHANGE)
        seen: set[str] = set()
        for item in items:
            if item.biz_code in seen:
                raise InvalidRequest(
                    gettext("The order number %(biz_code)s appears twice in the batch.") % {"biz_code": item.biz_code},
                    field="items",
                    provider=Provider.EXCHANGE,
                )
            seen.add(item.biz_code)
        normalize("items", tuple(items))

    def payload(self, *, merchant_id: str, business_id: str, callback_url: str) -> dict[str, Any]:
        """The body's fields in the vendor's documented order (the callback address before the items)."""
        payload: dict[str, Any] = {
            "merchantId": merchant_id,
            "businessId": business_id,
            "batchBizCode": self.batch_biz_code,
            "productCode": self.product_code,
        }
        if callback_url:
            payload["callbackUrl"] = callback_url
        payload["itemList"] = [item.row() for item in self.items]
        return payload


@dataclass(frozen=True, kw_only=True)
class OrderInfoQuery:
    """A query of one order's state (order/info). Checked on construction: an instance is sendable."""

    biz_code: str

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "biz_code",
            checked_text(self.biz_code, field="biz_code", label=gettext("Client reference"), max_length=MAX_CODE_LENGTH),
        )

    def payload(self, *, merchant_id: str, business_id: str) -> dict[str, Any]:
        # Inferred request shape: the documents list the endpoint but not its fields.
        return {"merchantId": merchant_id, "businessId": business_id, "bizCode": self.biz_code}


class ExchangeClient(ProviderClient):
    provider = Provider.EXCHANGE
    settings_class = ExchangeSettings

    @classmethod
    def for_callback(cls, headers: Mapping[str, str]) -> ExchangeClient:
        """The client of the merchant account whose businessId a callback's headers carry.

        InvalidRequest for a header outside its shape; SignatureInvalid when no account has the
        businessId; ProviderMisconfigured when several have it or the account is incomplete.
        """
        business_id = read_callback_headers(headers)["businessId"]
        client = cls(merchant_account=callback_account(SETTINGS_PREFIX, "BUSINESS_ID", business_id))
        _ = client.config  # read now: a callback of an incomplete account is refused before it is verified
        return client

    def secret_values(self) -> list[str]:
        return [self.config.private_key_pem, self.config.md5_key]

    # --- operations -------------------------------------------------------------------------

    def vip_charge(self, request: VipCharge, *, record: models.Model | None = None) -> ProviderResult:
        """Place one direct charge; its bizCode is the client reference.

        ACCEPTED on success: the final status comes by callback or order/info.
        """
        operation = "VIPCharge"
        prepared = self.prepare_vip_charge(request)
        biz_code = request.biz_code

        def parse(response: requests.Response) -> ProviderResult:
            status, message, data = self._envelope(response)
            if not is_success_status(status):
                return self._refusal(status, message, data, operation)
            if not isinstance(data, dict):
                raise ValueError("success without data")
            return self._accepted_item(data, expected_biz_code=biz_code, status=status, message=message)

        return self.execute(prepared, parse, record=record, client_reference=biz_code)

    def prepare_vip_charge(self, request: VipCharge) -> PreparedRequest:
        """The signed request, byte for byte (deterministic under a fixed clock and nonce)."""
        return self._prepare("VIPCharge", VIP_CHARGE_PATH, request.payload(**self._callback_account_fields()))

    def batch_charge(self, request: BatchCharge, *, record: models.Model | None = None) -> ProviderResult:
        """Place a batch of direct charges; the result has one item per bizCode, in request order."""
        operation = "batch"
        prepared = self.prepare_batch_charge(request)
        biz_codes = [item.biz_code for item in request.items]

        def parse(response: requests.Response) -> ProviderResult:
            status, message, data = self._envelope(response)
            if not is_success_status(status):
                return self._refusal(status, message, data, operation)
            answered = {str(row.get("bizCode")): row for row in (data or []) if isinstance(row, dict)}
            results = []
            for code in biz_codes:
                if code in answered:
                    results.append(self._accepted_item(answered[code], expected_biz_code=code, status=status, message=message))
                else:
                    # Accepted batch without this line: whether it was charged is not known.
                    results.append(ProviderResult(outcome=Outcome.UNKNOWN, code=str(status), client_reference=code))
            return ProviderResult(
                outcome=Outcome.ACCEPTED,
                code=str(status),
                message=message,
                client_reference=request.batch_biz_code,
                items=tuple(results),
                data={"status": status, "message": message, "data": data},
            )

        return self.execute(prepared, parse, record=record, client_reference=request.batch_biz_code)

    def prepare_batch_charge(self, request: BatchCharge) -> PreparedRequest:
        return self._prepare("batch", BATCH_PATH, request.payload(**self._callback_account_fields()))

    def order_info(self, request: OrderInfoQuery, *, record: models.Model | None = None) -> ProviderResult:
        """The current state of one order. A refusal here says nothing about the order itself."""
        operation = "info"
        prepared = self.prepare_order_info(request)
        biz_code = request.biz_code

        def parse(response: requests.Response) -> ProviderResult:
            status, message, data = self._envelope(response)
            if not is_success_status(status):
                raise ProviderRejected(
                    message or gettext("The redemption platform refused the query."),
                    code=str(status),
                    provider=self.provider,
                    operation=operation,
                )
            if not isinstance(data, dict) or str(data.get("bizCode", biz_code)) != biz_code:
                raise ValueError("answer is not about the order asked for")
            return ProviderResult(
                outcome=order_outcome(data.get("status")),
                code=str(data.get("status", "")),
                message=message,
                upstream_reference=str(data.get("orderCode") or ""),
                client_reference=biz_code,
                settlement_price=answer_decimal(data.get("settlementPrice")),
                data={"status": status, "message": message, "data": data},
            )

        return self.execute(prepared, parse, record=record, client_reference=biz_code)

    def prepare_order_info(self, request: OrderInfoQuery) -> PreparedRequest:
        return self._prepare(
            "info", ORDER_INFO_PATH,
            request.payload(merchant_id=self.config.merchant_id, business_id=self.config.business_id),
        )

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> ExchangeCallback:
        """Check an order-status callback of this merchant account and read it. `request.headers` will do.

        Inferred: the platform signs callbacks like requests (headers + body), with its RSA key
        (or the MD5 key for MD5 accounts). Only the account's configured sign type is accepted: a
        callback naming another in signType is refused, and it is never verified with a key the
        account lacks (an empty MD5 key would make md5(string to sign) a signature anyone can
        compute). Callbacks are retried, so the caller must be idempotent.
        """
        received = read_callback_headers(headers)

        def invalid(message: str | None = None) -> SignatureInvalid:
            return SignatureInvalid(
                message or gettext("The redemption platform callback signature does not verify."),
                provider=self.provider,
                operation="callback",
            )

        if not received["sign"] or received["businessId"] != self.config.business_id:
            raise invalid()
        sign_type = self.config.sign_type
        if received["signType"] and received["signType"] != sign_type:
            raise invalid(
                gettext("The callback is signed with %(sign_type)s, but merchant account %(account)s uses %(configured)s.")
                % {"sign_type": received["signType"], "account": self.merchant_account, "configured": sign_type}
            )
        # The key of the account's sign type, and only that one: never the other type's, never empty.
        if sign_type == signing.SIGN_TYPE_RSA:
            key_name, keys = "PLATFORM_PUBLIC_KEY", {"public_key_pem": self.config.platform_public_key_pem}
        else:
            key_name, keys = "MD5_KEY", {"md5_key": self.config.md5_key}
        if not all(keys.values()):
            raise ProviderMisconfigured(
                gettext("The environment variable %(variable)s is not set.")
                % {"variable": setting_variable(SETTINGS_PREFIX, self.merchant_account, key_name)},
                provider=self.provider,
            )
        signed_headers = {name: received[name] for name in ("businessId", "nonce", "signType", "timestamp")}
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise invalid() from err
        try:
            message = signing.string_to_sign(signed_headers, text)
        except ValueError as err:  # the header shapes exclude this; kept as the signing module's own guard
            raise InvalidRequest(str(err), field="headers", provider=self.provider) from err
        try:
            valid = signing.verify(message, received["sign"], sign_type=sign_type, **keys)
        except ValueError as err:
            raise ProviderMisconfigured(
                gettext("%(variable)s is not a PEM RSA public key.")
                % {"variable": setting_variable(SETTINGS_PREFIX, self.merchant_account, "PLATFORM_PUBLIC_KEY")},
                provider=self.provider,
            ) from err
        if not valid:
            raise invalid()
        try:
            payload = json.loads(text, parse_float=Decimal)
            order_code, biz_code = str(payload["orderCode"]), str(payload["bizCode"])
            settlement_price = answer_decimal(payload.get("settlementPrice"))
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidRequest(
                gettext("The redemption platform callback is not readable."), field="body", provider=self.provider
            ) from err
        return ExchangeCallback(
            order_code=order_code,
            biz_code=biz_code,
            status=order_outcome(payload.get("status")),
            upstream_status=str(payload.get("status", "")),
            settlement_price=settlement_price,
            message=str(payload.get("message") or ""),
            merchant_account=self.merchant_account,
            nonce=received["nonce"],
            timestamp_ms=int(received["timestamp"]),
            raw=payload,
        )

    # --- building and reading ---------------------------------------------------------------

    def _callback_account_fields(self) -> dict[str, str]:
        """The account's own fields of an order placement: who places it and where its callback goes."""
        return {
            "merchant_id": self.config.merchant_id,
            "business_id": self.config.business_id,
            "callback_url": self.config.callback_url,
        }

    def _prepare(self, operation: str, path: str, payload: dict[str, Any]) -> PreparedRequest:
        body = compact_json(payload)
        signed_headers = {
            "businessId": self.config.business_id,
            "nonce": self.nonce(),
            "signType": self.config.sign_type,
            "timestamp": str(round(self.clock() * 1000)),
        }
        try:
            signature = signing.sign(
                signing.string_to_sign(signed_headers, body),
                sign_type=self.config.sign_type,
                private_key_pem=self.config.private_key_pem,
                md5_key=self.config.md5_key,
            )
        except (ValueError, TypeError) as err:
            raise ProviderMisconfigured(
                gettext("%(variable)s is not a PEM RSA private key.")
                % {"variable": setting_variable(SETTINGS_PREFIX, self.merchant_account, "PRIVATE_KEY")},
                provider=self.provider,
                operation=operation,
            ) from err
        return PreparedRequest(
            operation=operation,
            method="POST",
            url=self.config.base_url + path,
            headers={"Content-Type": "application/json; charset=utf-8", **signed_headers, "sign": signature},
            body=body.encode("utf-8"),
            redacted_body=body,
        )

    @staticmethod
    def _envelope(response: requests.Response) -> tuple[Any, str, Any]:
        # Decoded as UTF-8 whatever the Content-Type says; amounts stay Decimal.
        payload = json.loads(response.content.decode("utf-8"), parse_float=Decimal)
        if not isinstance(payload, dict) or "status" not in payload:
            raise ValueError("not the platform's answer envelope")
        return payload["status"], str(payload.get("message") or ""), payload.get("data")

    def _refusal(self, status: Any, message: str, data: Any, operation: str) -> ProviderResult:
        # A refusal creates no platform order. An answer that names one despite a status we do
        # not read as success may be a success under a status value we inferred wrongly.
        rows = data if isinstance(data, list) else [data]
        if any(isinstance(row, dict) and row.get("orderCode") for row in rows):
            return ProviderResult(
                outcome=Outcome.UNKNOWN, code=str(status), message=message, data={"status": status, "data": data}
            )
        raise ProviderRejected(
            message or gettext("The redemption platform refused the charge."),
            code=str(status),
            provider=self.provider,
            operation=operation,
        )

    @staticmethod
    def _accepted_item(row: dict[str, Any], *, expected_biz_code: str, status: Any, message: str) -> ProviderResult:
        if "bizCode" in row and str(row["bizCode"]) != expected_biz_code:
            raise ValueError("answer is about another order")
        return ProviderResult(
            outcome=Outcome.ACCEPTED,
            code=str(status),
            message=message,
            upstream_reference=str(row.get("orderCode") or ""),
            client_reference=expected_biz_code,
            settlement_price=answer_decimal(row.get("settlementPrice")),
            data=row,
        )
