"""Wangdiantong open API client: supply-distribution recharge orders (新建供销充值单).

Every parameter except `body` travels in the query string; `body` (a JSON array of the method's
arguments) is POSTed raw. The voucher_no is the request's identity: a reused one is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import requests
from django.db import models
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from providers.base import REDACTED, PreparedRequest, ProviderClient
from providers.config import account_settings, setting_variable
from providers.exceptions import OutcomeUnknown, ProviderMisconfigured, ProviderRejected
from providers.models import Provider
from providers.payload import checked_choice, checked_money, checked_text, compact_json
from providers.results import Outcome, ProviderResult
from providers.wdt import signing

SETTINGS_PREFIX = "WDT"
ENDPOINT_PATH = "/openapi"
API_VERSION = "1.0"
METHOD_CREATE_RECHARGE_ORDER = "fenxiao.finance.AccountRecharge.createGxRechargeOrder"
OPERATION_CREATE_RECHARGE_ORDER = "createGxRechargeOrder"

MAX_AMOUNT = Decimal("99999")
FX_NICK_NO_MAX_LENGTH = 32
FX_NICK_NAME_MAX_LENGTH = 50
ACCOUNT_MAX_LENGTH = 128
# The vendor allows 128, but voucher_no is also our client_reference in the call log (64).
VOUCHER_NO_MAX_LENGTH = 64
REMARK_MAX_LENGTH = 255

# status -> outcome: 0 is success ("返回0为正常"); every other integer is a business refusal with
# a Chinese message. A missing or non-integer status is UNKNOWN.
STATUS_SUCCESS = 0


def outcome_of_status(status: Any) -> Outcome:
    if isinstance(status, bool) or not isinstance(status, int):
        return Outcome.UNKNOWN
    return Outcome.SUCCEEDED if status == STATUS_SUCCESS else Outcome.FAILED


class RechargeType(models.IntegerChoices):
    """`type` of a recharge order."""

    RECHARGE = 1, gettext_lazy("Prepaid recharge")
    REBATE = 2, gettext_lazy("Rebate")
    DEDUCTION = 3, gettext_lazy("Deduction")
    CREDIT_INCREASE = 4, gettext_lazy("Credit increase")
    CREDIT_DECREASE = 5, gettext_lazy("Credit decrease")


class PaymentType(models.IntegerChoices):
    """`payment_type` of a recharge order."""

    ALIPAY = 1, gettext_lazy("Alipay")
    WECHAT = 2, gettext_lazy("WeChat Pay")
    SUPPLY_CHAIN = 3, gettext_lazy("Supply-chain payment")
    CMB_DIRECT = 4, gettext_lazy("China Merchants Bank direct")
    BILL99 = 5, gettext_lazy("99Bill")
    TENPAY = 6, gettext_lazy("Tenpay")
    CASH = 7, gettext_lazy("Cash")
    BANK_TRANSFER = 8, gettext_lazy("Bank transfer")
    QUICK_PAY = 9, gettext_lazy("Quick pay")
    OTHER = 10, gettext_lazy("Other")


@dataclass(frozen=True)
class WdtSettings:
    """One merchant account's Wangdiantong credentials (WDT_* environment variables)."""

    base_url: str  # e.g. https://wdt.wangdian.cn; /openapi is appended unless already there
    sid: str
    app_key: str
    app_secret: str = field(repr=False)  # "secret:salt"

    @classmethod
    def for_account(cls, merchant_account: str = "default") -> WdtSettings:
        values = account_settings(SETTINGS_PREFIX, merchant_account, required=["BASE_URL", "SID", "APP_KEY", "APP_SECRET"])
        if ":" not in values["APP_SECRET"]:
            variable = setting_variable(SETTINGS_PREFIX, merchant_account, "APP_SECRET")
            raise ProviderMisconfigured(
                _("The environment variable %(variable)s must have the form secret:salt.") % {"variable": variable},
                provider=Provider.WDT,
            )
        return cls(
            base_url=values["BASE_URL"].rstrip("/"),
            sid=values["SID"],
            app_key=values["APP_KEY"],
            app_secret=values["APP_SECRET"],
        )

    @property
    def secret(self) -> str:
        return signing.split_app_secret(self.app_secret)[0]

    @property
    def salt(self) -> str:
        return signing.split_app_secret(self.app_secret)[1]

    @property
    def endpoint(self) -> str:
        # The vendor documents its addresses with /openapi included; accept both forms.
        return self.base_url if self.base_url.endswith(ENDPOINT_PATH) else self.base_url + ENDPOINT_PATH


@dataclass(frozen=True, kw_only=True)
class GxRechargeOrder:
    """The arguments of createGxRechargeOrder. Checked on construction: an instance is sendable."""

    fx_nick_no: str  # the distributor's code in the ERP
    fx_nick_name: str  # the distributor's name in the ERP
    recharge_type: RechargeType
    amount: Decimal
    payment_type: PaymentType
    beneficiary_account: str  # our receiving account
    voucher_no: str  # the payment voucher; unique per order, our client reference
    remark: str = ""

    def __post_init__(self) -> None:
        def normalize(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        normalize(
            "fx_nick_no",
            checked_text(self.fx_nick_no, field="fx_nick_no", label=_("Distributor code"), max_length=FX_NICK_NO_MAX_LENGTH),
        )
        normalize(
            "fx_nick_name",
            checked_text(
                self.fx_nick_name, field="fx_nick_name", label=_("Distributor name"), max_length=FX_NICK_NAME_MAX_LENGTH
            ),
        )
        normalize(
            "recharge_type",
            checked_choice(self.recharge_type, RechargeType, field="recharge_type", label=_("Recharge type")),
        )
        normalize("amount", checked_money(self.amount, field="amount", label=_("Amount"), maximum=MAX_AMOUNT))
        normalize(
            "payment_type", checked_choice(self.payment_type, PaymentType, field="payment_type", label=_("Payment type"))
        )
        normalize(
            "beneficiary_account",
            checked_text(
                self.beneficiary_account,
                field="beneficiary_account",
                label=_("Receiving account"),
                max_length=ACCOUNT_MAX_LENGTH,
            ),
        )
        normalize(
            "voucher_no",
            checked_text(self.voucher_no, field="voucher_no", label=_("Payment voucher"), max_length=VOUCHER_NO_MAX_LENGTH),
        )
        normalize(
            "remark",
            checked_text(self.remark, field="remark", label=_("Remark"), max_length=REMARK_MAX_LENGTH, required=False),
        )

    def arguments(self) -> dict[str, Any]:
        """The argument object, fields in the vendor's documented order."""
        arguments: dict[str, Any] = {
            "fx_nick_no": self.fx_nick_no,
            "fx_nick_name": self.fx_nick_name,
            "type": int(self.recharge_type),
            "amount": self.amount,
            "payment_type": int(self.payment_type),
            "beneficiary_account": self.beneficiary_account,
            "voucher_no": self.voucher_no,
        }
        if self.remark:
            arguments["remark"] = self.remark
        return arguments


class WdtClient(ProviderClient):
    provider = Provider.WDT
    settings_class = WdtSettings

    def secret_values(self) -> list[str]:
        # The salt travels in the query string (the vendor's design) but must not reach a log.
        return [self.config.app_secret, self.config.secret, self.config.salt]

    def create_recharge_order(
        self,
        order: GxRechargeOrder,
        *,
        record: models.Model | None = None,
    ) -> ProviderResult:
        """Create a supply-distribution recharge order; its voucher_no is the client reference.

        Returns a SUCCEEDED result, or raises ProviderRejected (a definite no, e.g. a reused
        voucher_no), OutcomeUnknown (never resend with a new voucher) or ProviderNotReached.
        """
        prepared = self.prepare_create_recharge_order(order)
        return self.execute(
            prepared,
            partial(parse_answer, client_reference=order.voucher_no, operation=OPERATION_CREATE_RECHARGE_ORDER),
            record=record,
            client_reference=order.voucher_no,
        )

    def prepare_create_recharge_order(self, order: GxRechargeOrder) -> PreparedRequest:
        return self.prepare(METHOD_CREATE_RECHARGE_ORDER, OPERATION_CREATE_RECHARGE_ORDER, [order.arguments()])

    def prepare(self, method: str, operation: str, arguments: list[dict[str, Any]]) -> PreparedRequest:
        """The signed request: system parameters and sign in the query string, body raw."""
        # Serialized once: the signed string is exactly the one sent.
        body = compact_json(arguments)
        params = {
            "key": self.config.app_key,
            "method": method,
            "salt": self.config.salt,
            "sid": self.config.sid,
            "timestamp": signing.timestamp(self.clock()),
            "v": API_VERSION,
        }
        params["sign"] = signing.sign({**params, "body": body}, self.config.secret)
        return PreparedRequest(
            operation=operation,
            method="POST",
            url=self.config.endpoint,
            params=params,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            body=body.encode("utf-8"),
            redacted_body=body,
            # The salt is half of the appsecret: not worth keeping in the log.
            redacted_params={**params, "salt": REDACTED},
        )


def parse_answer(response: requests.Response, *, client_reference: str = "", operation: str = "") -> ProviderResult:
    """Read an answer {status, message, data}: 0 succeeds, another integer is a refusal."""
    answer = response.json()
    status = answer.get("status") if isinstance(answer, dict) else None
    outcome = outcome_of_status(status)
    if outcome == Outcome.SUCCEEDED:
        data = answer.get("data")
        return ProviderResult(
            outcome=Outcome.SUCCEEDED,
            code=str(status),
            client_reference=client_reference,
            data=data if isinstance(data, dict) else {},
        )
    if outcome == Outcome.FAILED:
        raise ProviderRejected(
            str(answer.get("message") or _("Wangdiantong refused the request.")),
            code=str(status),
            provider=Provider.WDT,
            operation=operation,
        )
    raise OutcomeUnknown(
        _("Wangdiantong answered without a readable status."), provider=Provider.WDT, operation=operation
    )
