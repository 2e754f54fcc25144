"""A fake Wangdiantong open API: checks sid, key, salt, timestamp and sign, validates the
recharge order's arguments, refuses a reused voucher_no, and keeps the orders it created.

The vendor documents status 0 (success) and 100 with a Chinese message for argument errors
(e.g. "分销商编号不能为空"). Its statuses for system-parameter errors (sign, timestamp, key) are
not published; the sandbox uses STATUS_SYSTEM_ERROR for them (the client treats every non-zero
status alike).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from decimal import Decimal
from typing import Any

from providers.sandbox.server import Fault, SandboxRequest, SandboxResponse, VendorSandbox
from providers.wdt import signing
from providers.wdt.client import (
    API_VERSION,
    ENDPOINT_PATH,
    FX_NICK_NAME_MAX_LENGTH,
    FX_NICK_NO_MAX_LENGTH,
    MAX_AMOUNT,
    METHOD_CREATE_RECHARGE_ORDER,
    REMARK_MAX_LENGTH,
    PaymentType,
    RechargeType,
    WdtSettings,
)

STATUS_SUCCESS = 0
STATUS_SYSTEM_ERROR = 1  # inferred: not published by the vendor
STATUS_ARGUMENT_ERROR = 100
# The vendor's own limit; the client is stricter (64) because of its call log.
VOUCHER_NO_MAX_LENGTH = 128
SYSTEM_PARAMETERS = ("sid", "key", "salt", "method", "v", "timestamp", "sign")


class WdtSandbox(VendorSandbox):
    prefix = "/wdt"
    name = "wdt"

    def __init__(self, server) -> None:
        super().__init__(server)
        # Every request that reached the endpoint (accepted or not), and the orders by voucher_no.
        self.received: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}

    def operation_of(self, request: SandboxRequest) -> str:
        # "fenxiao.finance.AccountRecharge.createGxRechargeOrder" -> "createGxRechargeOrder"
        return request.query.get("method", "").rsplit(".", 1)[-1] or request.path

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path != ENDPOINT_PATH:
            return SandboxResponse.json({"error": "no such endpoint"}, status=404)
        body = request.body.decode("utf-8", errors="replace")
        with self.lock:
            self.received.append({"query": dict(request.query), "body": body})
        config = WdtSettings.for_account("default")
        missing = [name for name in SYSTEM_PARAMETERS if not request.query.get(name)]
        if missing:
            return _error(STATUS_SYSTEM_ERROR, f"缺少系统参数: {','.join(missing)}")
        if request.query["sid"] != config.sid or request.query["key"] != config.app_key:
            return _error(STATUS_SYSTEM_ERROR, "卖家账号或接口账号不存在")
        if request.query["salt"] != config.salt:
            return _error(STATUS_SYSTEM_ERROR, "salt错误")
        if request.query["v"] != API_VERSION:
            return _error(STATUS_SYSTEM_ERROR, "版本号错误")
        if not _timestamp_is_fresh(request.query["timestamp"]):
            return _error(STATUS_SYSTEM_ERROR, "时间戳已过期, 与服务器时间相差超过120秒")
        signed = {name: value for name, value in request.query.items() if name != "sign"}
        signed["body"] = body
        if not signing.signature_matches(signed, config.secret, request.query["sign"]):
            return _error(STATUS_SYSTEM_ERROR, "签名错误")
        if request.query["method"] != METHOD_CREATE_RECHARGE_ORDER:
            return _error(STATUS_SYSTEM_ERROR, f"接口不存在: {request.query['method']}")
        return self._create_recharge_order(body)

    def _create_recharge_order(self, body: str) -> SandboxResponse:
        try:
            arguments = json.loads(body, parse_float=Decimal)
        except ValueError:
            return _error(STATUS_ARGUMENT_ERROR, "body不是合法的JSON")
        # body is the array of the method's arguments; this method takes one object.
        if not isinstance(arguments, list) or len(arguments) != 1 or not isinstance(arguments[0], dict):
            return _error(STATUS_ARGUMENT_ERROR, "参数错误")
        order = arguments[0]
        problem = _argument_problem(order)
        if problem:
            return _error(STATUS_ARGUMENT_ERROR, problem)
        with self.lock:
            if order["voucher_no"] in self.orders:
                return _error(STATUS_ARGUMENT_ERROR, "支付凭证已存在")
            self.orders[order["voucher_no"]] = {**order, "rec_no": f"GXCZ{uuid.uuid4().hex[:12].upper()}"}
        # The documented success answer carries an empty data object.
        return SandboxResponse.json({"status": STATUS_SUCCESS, "data": {}})

    def rejection(self, fault: Fault) -> SandboxResponse:
        status = int(fault.code) if fault.code.lstrip("-").isdigit() else STATUS_ARGUMENT_ERROR
        return _error(status, fault.message or "参数错误")

    def received_for(self, voucher_no: str) -> list[dict[str, Any]]:
        """Requests that reached the endpoint carrying this voucher_no, accepted or not."""
        with self.lock:
            return [r for r in self.received if _voucher_of(r["body"]) == voucher_no]

    @classmethod
    def demo_environment(cls, base_url: str, callback_base_url: str) -> dict[str, str]:
        return {
            "WDT_BASE_URL": base_url,
            "WDT_SID": f"sandbox{secrets.token_hex(3)}",
            "WDT_APP_KEY": f"sandbox_{secrets.token_hex(6)}",
            "WDT_APP_SECRET": f"{secrets.token_hex(16)}:{secrets.token_hex(8)}",
        }


def _error(status: int, message: str) -> SandboxResponse:
    return SandboxResponse.json({"status": status, "message": message, "data": {}})


def _timestamp_is_fresh(raw: str) -> bool:
    if not raw.isdigit():
        return False
    return abs(time.time() - signing.unix_seconds(raw)) <= signing.TIMESTAMP_TOLERANCE_SECONDS


def _voucher_of(body: str) -> str:
    try:
        arguments = json.loads(body)
    except ValueError:
        return ""
    if isinstance(arguments, list) and arguments and isinstance(arguments[0], dict):
        return str(arguments[0].get("voucher_no", ""))
    return ""


def _argument_problem(order: dict[str, Any]) -> str:
    """The vendor's message for the first unacceptable argument, or "" when all are acceptable."""
    texts = (
        ("fx_nick_no", "分销商编号", FX_NICK_NO_MAX_LENGTH),
        ("fx_nick_name", "分销商名称", FX_NICK_NAME_MAX_LENGTH),
        ("beneficiary_account", "收款账号", 128),
        ("voucher_no", "支付凭证", VOUCHER_NO_MAX_LENGTH),
    )
    for name, label, max_length in texts:
        value = order.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"{label}不能为空"
        if len(value) > max_length:
            return f"{label}长度不能超过{max_length}"
    if len(str(order.get("remark") or "")) > REMARK_MAX_LENGTH:
        return f"备注长度不能超过{REMARK_MAX_LENGTH}"
    if order.get("type") not in RechargeType.values:
        return "充值类型不正确"
    if order.get("payment_type") not in PaymentType.values:
        return "支付类型不正确"
    amount = order.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)) or not 0 < amount <= MAX_AMOUNT:
        return "充值金额需要在0~99999之间"
    return ""
