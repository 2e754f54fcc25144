"""A fake BEST GERP distribution API: checks appId, timestamp and sign, validates the business
fields, and keeps the recharge/refund records it accepted.

The vendor publishes only DATA_INPUT_ERROR and APP_NOT_EXIST; what it answers to a bad sign or
a stale timestamp is not published, so the sandbox reports those as DATA_INPUT_ERROR with a
message saying which check failed.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from decimal import Decimal
from typing import Any

from providers.best_gerp import signing
from providers.best_gerp.client import (
    ENDPOINT_PATH,
    OPERATION_RECHARGE_REFUND,
    SERVICE_RECHARGE_REFUND,
    BestGerpSettings,
    DistributorEnv,
    PayChannel,
    TransactionType,
)
from providers.sandbox.server import Fault, SandboxRequest, SandboxResponse, VendorSandbox

TIMESTAMP_TOLERANCE_SECONDS = 5 * 60
SIGNED_FIELDS = ("appId", "bizParam", "serviceType", "timestamp")


class BestGerpSandbox(VendorSandbox):
    prefix = "/best"
    name = "best_gerp"

    def __init__(self, server) -> None:
        super().__init__(server)
        # Every request that reached the endpoint (accepted or not), and the records accepted.
        self.received: list[dict[str, str]] = []
        self.records: list[dict[str, Any]] = []

    def operation_of(self, request: SandboxRequest) -> str:
        return OPERATION_RECHARGE_REFUND if request.path == ENDPOINT_PATH else request.path

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path != ENDPOINT_PATH or request.method != "POST":
            return SandboxResponse.json({"error": "no such endpoint"}, status=404)
        try:
            form = request.form()
        except Exception:  # noqa: BLE001 - any unreadable body is the caller's input error
            return self._error("DATA_INPUT_ERROR", "The request body is not multipart/form-data")
        with self.lock:
            self.received.append(form)
        config = BestGerpSettings.for_account("default")
        if form.get("appId") != config.app_id:
            return self._error("APP_NOT_EXIST", "The app does not exist")
        missing = [name for name in (*SIGNED_FIELDS, "sign") if not form.get(name)]
        if missing:
            return self._error("DATA_INPUT_ERROR", f"Missing parameter: {', '.join(missing)}")
        if not _timestamp_is_fresh(form["timestamp"]):
            return self._error("DATA_INPUT_ERROR", "The timestamp has expired")
        signed = {name: form[name] for name in SIGNED_FIELDS}
        if not signing.signature_matches(signed, config.app_secret, form["sign"]):
            return self._error("DATA_INPUT_ERROR", "Illegal signature")
        if form["serviceType"] != SERVICE_RECHARGE_REFUND:
            return self._error("DATA_INPUT_ERROR", f"Unknown serviceType {form['serviceType']}")
        try:
            biz_param = json.loads(form["bizParam"], parse_float=Decimal)
        except ValueError:
            return self._error("DATA_INPUT_ERROR", "bizParam is not valid JSON")
        problem = _business_problem(biz_param)
        if problem:
            return self._error("DATA_INPUT_ERROR", problem)
        trace_id = uuid.uuid4().hex
        with self.lock:
            self.records.append({**biz_param, "traceId": trace_id})
        biz_content = {"notSuccess": False, "state": "success", "traceId": trace_id}
        return SandboxResponse.json(
            {
                "state": "success",
                "errorCode": "",
                "errorMsg": "",
                # The vendor sends bizContent as a JSON string inside the JSON answer.
                "bizContent": json.dumps(biz_content, separators=(",", ":")),
                "requestId": str(uuid.uuid4()),
            }
        )

    def rejection(self, fault: Fault) -> SandboxResponse:
        return self._error(fault.code or "DATA_INPUT_ERROR", fault.message or "The input of Params is incorrect")

    @staticmethod
    def _error(code: str, message: str) -> SandboxResponse:
        return SandboxResponse.json(
            {"state": "failure", "errorCode": code, "errorMsg": message, "bizContent": None, "requestId": str(uuid.uuid4())}
        )

    def records_for(self, distributor_customer_name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.records if r.get("distributorCustomerName") == distributor_customer_name]

    def received_for(self, distributor_customer_name: str) -> list[dict[str, str]]:
        """Requests that reached the endpoint for this distributor, accepted or not."""
        with self.lock:
            return [form for form in self.received if _distributor_of(form) == distributor_customer_name]

    @classmethod
    def demo_environment(cls, base_url: str, callback_base_url: str) -> dict[str, str]:
        return {
            "BEST_GERP_BASE_URL": base_url,
            "BEST_GERP_APP_ID": f"SANDBOX{secrets.token_hex(4).upper()}",
            "BEST_GERP_APP_SECRET": secrets.token_hex(16),
            "BEST_GERP_TIMESTAMP_UNIT": "ms",
        }


def _distributor_of(form: dict[str, str]) -> str:
    try:
        biz_param = json.loads(form.get("bizParam") or "{}")
    except ValueError:
        return ""
    return str(biz_param.get("distributorCustomerName", "")) if isinstance(biz_param, dict) else ""


def _timestamp_is_fresh(raw: str) -> bool:
    # The vendor's pages show both 13-digit milliseconds and 10-digit seconds; accept either.
    if not raw.isdigit():
        return False
    seconds = int(raw) / 1000 if len(raw) >= 13 else int(raw)
    return abs(time.time() - seconds) <= TIMESTAMP_TOLERANCE_SECONDS


def _business_problem(biz_param: Any) -> str:
    """The vendor's refusal message for the business fields, or "" when they are acceptable."""
    if not isinstance(biz_param, dict):
        return "bizParam must be a JSON object"
    for name in ("distributorCustomerName", "distributorEnv", "type", "totalPrice"):
        if biz_param.get(name) in (None, ""):
            return f"{name} is required"
    if biz_param["distributorEnv"] not in DistributorEnv.values:
        return "distributorEnv must be DOMESTIC or CROSSBORDER"
    if biz_param["type"] not in TransactionType.values:
        return "type must be RECHARGE or REFUND"
    if "payChannel" in biz_param and biz_param["payChannel"] not in PayChannel.values:
        return "payChannel is not a known payment method"
    price = biz_param["totalPrice"]
    if isinstance(price, bool) or not isinstance(price, (int, Decimal)) or price <= 0:
        return "totalPrice must be a positive number"
    return ""
