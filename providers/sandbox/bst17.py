"""A fake 17bst charge platform: DES-encrypted requests, products, balance, e-coupon purchases
with DES-encrypted card PINs, card queries, and the 17bst-style status callback.

It reads the same credentials as the client (the default account). By default an e-coupon order
is answered at once with its cards (status 1000). With `answer_processing_first` it answers 1011
and completes after `completion_delay` seconds (cards then come from getCardInfo); with
`send_callbacks` it then POSTs the status callback (form fields agtPhone, reqStreamId, state,
sign) to receiveUrl when that is a URL, else to the account's BST17_CALLBACK_URL.
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
import string
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlencode

from providers.bst17 import signing
from providers.bst17.client import Bst17Settings
from providers.exceptions import ProviderMisconfigured
from providers.sandbox.callbacks import post_callback
from providers.sandbox.server import Fault, SandboxRequest, SandboxResponse, VendorSandbox

logger = logging.getLogger(__name__)

PRODUCTS: list[dict[str, Any]] = [
    {"productCode": 8, "businessCode": 1, "businessName": "话费充值卡", "arriveType": 1, "provinceId": 200,
     "cityId": -1, "province": "广东", "city": None, "tradeFace": 500, "price": 500, "discount": Decimal("96.89")},
    {"productCode": 12, "businessCode": 1, "businessName": "话费充值卡", "arriveType": 1, "provinceId": 200,
     "cityId": -1, "province": "广东", "city": None, "tradeFace": 100, "price": 100, "discount": Decimal("97.33")},
    {"productCode": 18, "businessCode": 3, "businessName": "加油卡", "arriveType": 2, "provinceId": 200,
     "cityId": -1, "province": "广东", "city": None, "tradeFace": 300, "price": 500, "discount": Decimal("89.56")},
    {"productCode": 69, "businessCode": 5, "businessName": "视频会员卡券", "arriveType": 1, "provinceId": -1,
     "cityId": -1, "province": "全国", "city": None, "tradeFace": 30, "price": 30, "discount": Decimal("90.00")},
]

STATE_SUCCESS, STATE_FAILED = "0", "1"


class Bst17Sandbox(VendorSandbox):
    prefix = "/bst17"
    name = "bst17"

    answer_processing_first: bool = False
    send_callbacks: bool = False
    completion_delay: float = 1.0
    callback_retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0)
    # Seconds getCardInfo must wait between queries of one order (0: no limit) before 1017.
    min_query_interval: float = 0.0

    def __init__(self, server) -> None:
        super().__init__(server)
        self.credit = Decimal("10000.000")
        self.freeze = Decimal("0")
        self.profit = Decimal("0")
        self.orders: dict[str, dict[str, Any]] = {}
        self.last_queried: dict[str, float] = {}
        self.callback_attempts: list[dict[str, Any]] = []
        # Every reqStreamId received in an ecoupon request, duplicates included.
        self.ecoupon_requests: Counter[str] = Counter()

    def operation_of(self, request: SandboxRequest) -> str:
        return request.path.rstrip("/").rsplit("/", 1)[-1]

    def rejection(self, fault: Fault) -> SandboxResponse:
        return self._answer(int(fault.code) if fault.code.isdigit() else 1003, fault.message or "交易失败")

    @classmethod
    def demo_environment(cls, base_url: str, callback_base_url: str) -> dict[str, str]:
        alphabet = string.ascii_letters + string.digits
        return {
            "BST17_BASE_URL": base_url,
            "BST17_APP_ID": secrets.token_hex(5),
            "BST17_APP_KEY": "".join(secrets.choice(alphabet) for _ in range(16)),
            "BST17_AGT_PHONE": "158" + "".join(secrets.choice(string.digits) for _ in range(8)),
            "BST17_TRADE_PASSWORD": secrets.token_urlsafe(12),
            "BST17_CARD_KEY": "".join(secrets.choice(alphabet) for _ in range(16)),
            "BST17_CALLBACK_URL": callback_base_url.rstrip("/") + "/callbacks/bst17/",
        }

    # --- requests ---------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        try:
            config = Bst17Settings.for_account("default")
        except ProviderMisconfigured as err:
            return self._answer(1003, f"sandbox not configured: {err}")
        handlers = {
            "getProductList": self._product_list,
            "queryAgtBalance": self._balance,
            "ecoupon": self._ecoupon,
            "getCardInfo": self._card_info,
        }
        operation = self.operation_of(request)
        handler = handlers.get(operation)
        if request.method != "POST" or handler is None:
            return SandboxResponse.json({"status": 1003, "msg": "接口不存在", "data": None, "throwable": None}, 404)
        try:
            envelope = request.json()
            if envelope.get("appId") != config.app_id:
                return self._answer(1003, "商户不存在")
            source = json.loads(signing.des_decrypt(str(envelope.get("param") or ""), config.app_key))
        except ValueError:
            return self._answer(1003, "参数解密失败")
        if str(source.get("agtPhone")) != config.agt_phone:
            return self._answer(1013, "代理号码不存在")
        if operation != "getProductList" and source.get("tradePwd") != config.trade_password_digest:
            return self._answer(1004, "交易密码错误")
        return handler(source, config)

    def _product_list(self, source: dict[str, Any], config: Bst17Settings) -> SandboxResponse:
        return self._answer(1000, "产品查询成功", data=PRODUCTS)

    def _balance(self, source: dict[str, Any], config: Bst17Settings) -> SandboxResponse:
        with self.lock:
            return self._answer(1000, "查询成功", data={"credit": self.credit, "freeze": self.freeze, "profit": self.profit})

    def _ecoupon(self, source: dict[str, Any], config: Bst17Settings) -> SandboxResponse:
        stream_id = str(source.get("reqStreamId") or "")
        with self.lock:
            self.ecoupon_requests[stream_id] += 1
        product = next((p for p in PRODUCTS if str(p["productCode"]) == str(source.get("productCode"))), None)
        try:
            quantity = int(source.get("amount"))
        except (TypeError, ValueError):
            quantity = 0
        if not stream_id or quantity < 1:
            return self._answer(1001, "参数错误", stream_id=stream_id)
        if product is None:
            return self._answer(1001, "产品不存在", stream_id=stream_id)
        cost = (Decimal(product["price"]) * product["discount"] / 100 * quantity).quantize(Decimal("0.001"))
        with self.lock:
            if stream_id in self.orders:
                return self._answer(1016, "商户请求流水号重复", stream_id=stream_id)
            if cost > self.credit:
                return self._answer(1010, "余额不足", stream_id=stream_id)
            self.credit -= cost
            order = {
                "reqStreamId": stream_id,
                "orderNo": f"{int(time.time() * 1000)}{secrets.randbelow(10**4):04d}",
                "status": 1011 if self.answer_processing_first else 1000,
                "cards": [self._new_card() for _ in range(quantity)],
                "cost": cost,
                "receiveUrl": str(source.get("receiveUrl") or ""),
            }
            self.orders[stream_id] = order
        if order["status"] == 1011:
            timer = threading.Timer(self.completion_delay, self._complete, args=(stream_id, config))
            timer.daemon = True
            timer.start()
            return self._answer(1011, "交易处理中", stream_id=stream_id, order_no=order["orderNo"])
        if self.send_callbacks:
            self._notify_later(stream_id, config)
        return self._order_answer(order, config)

    def _card_info(self, source: dict[str, Any], config: Bst17Settings) -> SandboxResponse:
        stream_id = str(source.get("reqStreamId") or "")
        with self.lock:
            now = time.monotonic()
            last = self.last_queried.get(stream_id)
            if self.min_query_interval and last is not None and now - last < self.min_query_interval:
                return self._answer(1017, "查询过于频繁", stream_id=stream_id)
            self.last_queried[stream_id] = now
            order = self.orders.get(stream_id)
            if order is None:
                return self._answer(1015, "订单不存在", stream_id=stream_id)
            if order["status"] == 1011:
                return self._answer(1011, "交易处理中", stream_id=stream_id, order_no=order["orderNo"])
            return self._order_answer(order, config)

    def _complete(self, stream_id: str, config: Bst17Settings) -> None:
        with self.lock:
            self.orders[stream_id]["status"] = 1000
        if self.send_callbacks:
            self._notify(stream_id, config)

    # --- callbacks --------------------------------------------------------------------------

    def _notify_later(self, stream_id: str, config: Bst17Settings) -> None:
        timer = threading.Timer(self.completion_delay, self._notify, args=(stream_id, config))
        timer.daemon = True
        timer.start()

    def _notify(self, stream_id: str, config: Bst17Settings) -> None:
        with self.lock:
            order = self.orders[stream_id]
            state = STATE_SUCCESS if order["status"] == 1000 else STATE_FAILED
            receive_url = order["receiveUrl"]
        url = receive_url if receive_url.startswith(("http://", "https://")) else config.callback_url
        if not url:
            return
        fields = {
            "agtPhone": config.agt_phone,
            "reqStreamId": stream_id,
            "state": state,
            "sign": signing.callback_sign(config.agt_phone, stream_id, state, config.app_key),
        }
        for delay in (0.0, *self.callback_retry_delays):
            time.sleep(delay)
            answer = post_callback(
                url, urlencode(fields).encode("ascii"), {"Content-Type": "application/x-www-form-urlencoded"}
            )
            delivered = answer.lower() == "success"
            with self.lock:
                self.callback_attempts.append(
                    {"reqStreamId": stream_id, "url": url, "answer": answer[:200], "delivered": delivered}
                )
            if delivered:
                return

    # --- answers ----------------------------------------------------------------------------

    # Every PIN this process's sandboxes ever issued: the test suite's secret scan looks for them
    # in the database and in the log output.
    issued_pins: ClassVar[set[str]] = set()

    @classmethod
    def _new_card(cls) -> dict[str, str]:
        alphabet = string.ascii_uppercase + string.digits
        pin = "".join(secrets.choice(alphabet) for _ in range(16))
        cls.issued_pins.add(pin)
        return {
            "cardNum": "".join(secrets.choice(string.digits) for _ in range(16)),
            "pin": pin,
            "expiretime": (datetime.date.today() + datetime.timedelta(days=365)).isoformat(),
        }

    def _order_answer(self, order: dict[str, Any], config: Bst17Settings) -> SandboxResponse:
        cards = [
            {
                "cardNum": card["cardNum"],
                "cardPwd": signing.des_encrypt(card["pin"], config.card_key),
                "expiretime": card["expiretime"],
            }
            for card in order["cards"]
        ]
        return self._answer(1000, "充值成功", data=cards, stream_id=order["reqStreamId"], order_no=order["orderNo"])

    @staticmethod
    def _answer(status: int, msg: str, *, data: Any = None, stream_id: str = "", order_no: str = "") -> SandboxResponse:
        body: dict[str, Any] = {"data": _plain(data), "status": status, "throwable": None, "msg": msg}
        if stream_id:
            body["reqStreamId"] = stream_id
        if order_no:
            body["orderNo"] = order_no
        return SandboxResponse.json(body)


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _plain(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_plain(value) for value in data]
    if isinstance(data, Decimal):
        return float(data)
    return data
