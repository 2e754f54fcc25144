"""BEST GERP distribution API client: recording a distributor's recharge or refund in the ERP.

The API takes no idempotency key and no query endpoint is known for these records, so an
UNKNOWN outcome must go to a person, who checks in the ERP whether the record arrived.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import requests
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from urllib3 import encode_multipart_formdata

from providers.base import PreparedRequest, ProviderClient
from providers.best_gerp import signing
from providers.config import account_settings, setting_variable
from providers.exceptions import InvalidRequest, OutcomeUnknown, ProviderMisconfigured, ProviderRejected
from providers.models import Provider
from providers.payload import checked_choice, checked_money, checked_text, compact_json
from providers.results import Outcome, ProviderResult

SETTINGS_PREFIX = "BEST_GERP"
ENDPOINT_PATH = "/api/v1/distribution"
SERVICE_RECHARGE_REFUND = "DISTRIBUTION_RECHARGE_REFUND"
OPERATION_RECHARGE_REFUND = "recharge_refund"

# The call log keys on client_reference with this length.
CLIENT_REFERENCE_MAX_LENGTH = 64

TIMESTAMP_UNITS = {
    "ms": signing.MILLISECONDS,
    "milliseconds": signing.MILLISECONDS,
    "s": signing.SECONDS,
    "seconds": signing.SECONDS,
}


class DistributorEnv(models.TextChoices):
    DOMESTIC = "DOMESTIC", gettext_lazy("Domestic")
    CROSSBORDER = "CROSSBORDER", gettext_lazy("Cross-border")


class TransactionType(models.TextChoices):
    RECHARGE = "RECHARGE", gettext_lazy("Recharge")
    REFUND = "REFUND", gettext_lazy("Refund")


class PayChannel(models.TextChoices):
    ALIPAY = "ALIPAY", gettext_lazy("Alipay")
    BANK_TRANSFER = "BANK_TRANSFER", gettext_lazy("Bank transfer")
    CASH = "CASH", gettext_lazy("Cash")
    WECHAT_PAY = "WECHAT_PAY", gettext_lazy("WeChat Pay")


# errorCode -> outcome. Only codes seen in the vendor's documents are definite refusals; an answer
# that is neither a clear success nor one of these may have been carried out, so it is UNKNOWN.
ERROR_CODE_OUTCOMES: dict[str, Outcome] = {
    "DATA_INPUT_ERROR": Outcome.FAILED,  # the parameters were refused
    "APP_NOT_EXIST": Outcome.FAILED,  # unknown appId: credentials are per environment
}


@dataclass(frozen=True)
class BestGerpSettings:
    """One merchant account's BEST GERP credentials (BEST_GERP_* environment variables)."""

    base_url: str  # scheme and host, e.g. https://www.qianyierp.com; the API path is appended
    app_id: str
    app_secret: str = field(repr=False)
    timestamp_unit: str = signing.MILLISECONDS

    @classmethod
    def for_account(cls, merchant_account: str = "default") -> BestGerpSettings:
        values = account_settings(SETTINGS_PREFIX, merchant_account, required=["BASE_URL", "APP_ID", "APP_SECRET"])
        unit_setting = (values.get("TIMESTAMP_UNIT") or "ms").strip().lower()
        if unit_setting not in TIMESTAMP_UNITS:
            variable = setting_variable(SETTINGS_PREFIX, merchant_account, "TIMESTAMP_UNIT")
            raise ProviderMisconfigured(
                _("The environment variable %(variable)s must be ms or s.") % {"variable": variable},
                provider=Provider.BEST_GERP,
            )
        return cls(
            base_url=values["BASE_URL"].rstrip("/"),
            app_id=values["APP_ID"],
            app_secret=values["APP_SECRET"],
            timestamp_unit=TIMESTAMP_UNITS[unit_setting],
        )

    @property
    def endpoint(self) -> str:
        return self.base_url + ENDPOINT_PATH


@dataclass(frozen=True, kw_only=True)
class RechargeRefund:
    """A distributor's recharge or refund to record in the ERP (service DISTRIBUTION_RECHARGE_REFUND).

    Checked on construction: an instance is always acceptable to send.
    """

    distributor_customer_name: str  # the distributor's user account in the ERP, e.g. "QY12345"
    distributor_env: DistributorEnv
    transaction_type: TransactionType
    total_price: Decimal
    pay_channel: PayChannel | None = None
    distributor_account: str = ""  # the account the distributor paid from
    transaction_complete_time: datetime.datetime | None = None
    supplier_account: str = ""  # our receiving account
    remark: str = ""

    def __post_init__(self) -> None:
        def normalize(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        normalize(
            "distributor_customer_name",
            checked_text(
                self.distributor_customer_name,
                field="distributor_customer_name",
                label=_("Distributor account"),
            ),
        )
        normalize(
            "distributor_env",
            checked_choice(self.distributor_env, DistributorEnv, field="distributor_env", label=_("Distributor environment")),
        )
        normalize(
            "transaction_type",
            checked_choice(self.transaction_type, TransactionType, field="transaction_type", label=_("Transaction type")),
        )
        normalize("total_price", checked_money(self.total_price, field="total_price", label=_("Amount")))
        if self.pay_channel is not None:
            normalize(
                "pay_channel", checked_choice(self.pay_channel, PayChannel, field="pay_channel", label=_("Payment channel"))
            )
        for name, label in (
            ("distributor_account", _("Distributor payment account")),
            ("supplier_account", _("Receiving account")),
            ("remark", _("Remark")),
        ):
            normalize(name, checked_text(getattr(self, name), field=name, label=label, required=False))
        moment = self.transaction_complete_time
        if moment is not None and (not isinstance(moment, datetime.datetime) or timezone.is_naive(moment)):
            raise InvalidRequest(
                _("The transaction time must be a date and time with a time zone."), field="transaction_complete_time"
            )

    def biz_param(self) -> dict[str, Any]:
        """The business fields in the vendor's order, optional ones only when given."""
        fields: dict[str, Any] = {
            "distributorCustomerName": self.distributor_customer_name,
            "distributorEnv": str(self.distributor_env),
            "type": str(self.transaction_type),
        }
        if self.pay_channel is not None:
            fields["payChannel"] = str(self.pay_channel)
        if self.distributor_account:
            fields["distributorAccount"] = self.distributor_account
        if self.transaction_complete_time is not None:
            fields["transactionCompleteTime"] = _vendor_time(self.transaction_complete_time)
        fields["totalPrice"] = self.total_price
        if self.supplier_account:
            fields["supplierAccount"] = self.supplier_account
        if self.remark:
            fields["remark"] = self.remark
        return fields


def _vendor_time(moment: datetime.datetime) -> str:
    """`2024-05-20 15:40:30+08:00`: local time (settings.TIME_ZONE) with its offset."""
    return timezone.localtime(moment).isoformat(sep=" ", timespec="seconds")


class BestGerpClient(ProviderClient):
    provider = Provider.BEST_GERP
    settings_class = BestGerpSettings

    def secret_values(self) -> list[str]:
        return [self.config.app_secret]

    def recharge_refund(
        self,
        request: RechargeRefund,
        *,
        record: models.Model | None = None,
        client_reference: str = "",
    ) -> ProviderResult:
        """Record a recharge or refund in the ERP; client_reference is our own record reference.

        Returns a SUCCEEDED result, or raises ProviderRejected (a definite no), OutcomeUnknown
        (never resend: a person checks in the ERP) or ProviderNotReached (safe to retry).
        """
        if len(client_reference) > CLIENT_REFERENCE_MAX_LENGTH:
            raise InvalidRequest(
                _("The reference must be at most %(max_length)d characters.") % {"max_length": CLIENT_REFERENCE_MAX_LENGTH},
                field="client_reference",
            )
        prepared = self.prepare_recharge_refund(request)
        return self.execute(
            prepared,
            partial(parse_recharge_refund, client_reference=client_reference),
            record=record,
            client_reference=client_reference,
        )

    def prepare_recharge_refund(self, request: RechargeRefund) -> PreparedRequest:
        """The signed multipart request, byte for byte (deterministic under a fixed clock and nonce)."""
        fields = {
            "appId": self.config.app_id,
            "serviceType": SERVICE_RECHARGE_REFUND,
            # Serialized once: the signed string is exactly the one sent.
            "bizParam": compact_json(request.biz_param()),
            "timestamp": signing.timestamp(self.clock(), self.config.timestamp_unit),
        }
        fields["sign"] = signing.sign(fields, self.config.app_secret)
        # Built here rather than by requests so the boundary, and so the bytes, follow self.nonce.
        body, content_type = encode_multipart_formdata(list(fields.items()), boundary=f"BestGerpBoundary{self.nonce()}")
        return PreparedRequest(
            operation=OPERATION_RECHARGE_REFUND,
            method="POST",
            url=self.config.endpoint,
            headers={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            # The fields hold no secret (the sign may stay); stored readable rather than as multipart.
            redacted_body=json.dumps(fields, ensure_ascii=False),
        )


def parse_recharge_refund(response: requests.Response, *, client_reference: str = "") -> ProviderResult:
    """Read an answer: success only when the envelope and the decoded bizContent both say so."""
    answer = response.json()
    if not isinstance(answer, dict):
        raise OutcomeUnknown(_("The answer is not a JSON object."), provider=Provider.BEST_GERP)
    biz_content = _decoded_biz_content(answer.get("bizContent"))
    error_code = answer.get("errorCode") or ""
    if (
        answer.get("state") == "success"
        and not error_code
        and biz_content is not None
        and biz_content.get("notSuccess") is False
        and biz_content.get("state") == "success"
    ):
        return ProviderResult(
            outcome=Outcome.SUCCEEDED,
            upstream_reference=str(answer.get("requestId") or ""),
            client_reference=client_reference,
            data={**answer, "bizContent": biz_content},
        )
    # A refusal may be reported in the envelope or inside bizContent.
    if not error_code and biz_content is not None:
        error_code = biz_content.get("errorCode") or ""
    message = str(answer.get("errorMsg") or (biz_content or {}).get("errorMsg") or "")
    if ERROR_CODE_OUTCOMES.get(str(error_code)) == Outcome.FAILED:
        raise ProviderRejected(
            message or _("The ERP refused the record."),
            code=str(error_code),
            provider=Provider.BEST_GERP,
            operation=OPERATION_RECHARGE_REFUND,
        )
    raise OutcomeUnknown(
        _("The ERP answered something that is neither a success nor a known refusal (%(code)s).")
        % {"code": error_code or answer.get("state") or "?"},
        provider=Provider.BEST_GERP,
        operation=OPERATION_RECHARGE_REFUND,
    )


def _decoded_biz_content(raw: Any) -> dict[str, Any] | None:
    """bizContent is itself a JSON string; None when absent or unreadable."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw:
        return None
    try:
        decoded = json.loads(raw)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None
