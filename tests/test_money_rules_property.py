"""The money rules as a property: no sequence of steps, by anyone, moves money outside them.

A Hypothesis state machine drives random sequences of what the back office meets in a day: orders
created, edited (through the admin change form, by any role), placed, submitted by a worker against
an upstream that accepts, refuses, times out, delivers unreadable cards or is not reached; workers
that die mid-submission; reconciliation queries; the platform's callbacks, valid, forged (MD5 on an
RSA account, another key, a smuggled header) and replayed; manual decisions; fund transactions
created, edited, submitted, approved and reversed by random roles; distributors suspended. After
every step it checks:

- every balance equals the sum of its ledger;
- no fund transaction was approved by anyone who set one of its money fields;
- no money was released for an order the upstream charged;
- no order reached the upstream twice;
- what an order holds is the price of what the upstream was asked for;
- nothing was placed for a suspended distributor.

The upstream is a model of the vendors' behaviour (orders.services._client is replaced); callbacks
go through the real view, signatures and all.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from config.provider_settings import provider_accounts
from config.roles import FINANCE_CLERK, FINANCE_SUPERVISOR
from distributors.exceptions import InsufficientFunds
from distributors.fund_transactions import (
    fund_transaction_approve,
    fund_transaction_create,
    fund_transaction_reverse,
    fund_transactions_submit,
)
from distributors.models import (
    Account,
    DistributorStatus,
    EntryKind,
    FundTransaction,
    FundTransactionStatus,
    LedgerEntry,
)
from orders import services
from orders.models import OrderKind, OrderStatus, Product, RechargeOrder
from orders.services import (
    order_create,
    order_query,
    order_resolve,
    orders_place,
    orders_recover_stale_submissions,
)
from providers.bst17.client import CardInfoQuery, EcouponPurchase
from providers.exceptions import OutcomeUnknown, ProviderMisconfigured, ProviderNotReached, ProviderRejected
from providers.exchange import signing
from providers.exchange.client import OrderInfoQuery, VipCharge
from providers.models import Provider
from providers.results import CardSecretData, Outcome, ProviderResult
from tests.factories import fund, make_distributor, make_user, sign_in
from tests.providers import bst17_support, exchange_support

pytestmark = pytest.mark.django_db

# What the upstream does with the next request it is sent.
BEHAVIOURS = ["accept then succeed", "accept then fail", "deliver", "refuse", "not reached", "time out, charged",
              "time out, not charged", "unreadable cards", "duplicate id, charged"]
CALLBACKS = ["valid", "forged md5", "forged key", "replayed", "smuggled nonce"]


@dataclass
class Upstream:
    """What the vendors know: which references reached them, what was bought, and whether it was charged."""

    sent: Counter = field(default_factory=Counter)
    bought: dict[str, tuple[str, int]] = field(default_factory=dict)
    charged: dict[str, bool] = field(default_factory=dict)
    behaviour: str = "accept then succeed"

    def receive(self, reference: str, product_code: str, quantity: int, *, cards: bool) -> ProviderResult:
        behaviour = self.behaviour
        if behaviour == "not reached":
            raise ProviderNotReached("connection refused")
        self.sent[reference] += 1
        self.bought[reference] = (product_code, quantity)
        charged = behaviour in ("accept then succeed", "deliver", "time out, charged", "unreadable cards",
                                "duplicate id, charged")
        self.charged[reference] = charged
        if behaviour == "refuse":
            raise ProviderRejected("余额不足", code="1010")
        if behaviour.startswith("time out"):
            raise OutcomeUnknown("read timeout")
        if behaviour == "unreadable cards":
            err = ProviderMisconfigured("A card PIN could not be decrypted: check BST17_CARD_KEY.")
            err.sent = True  # as the transport marks an error raised while reading an answer
            raise err
        if behaviour == "duplicate id, charged":
            raise ProviderRejected("商户请求流水号重复", code="1016", proves_not_carried_out=False)
        if behaviour == "deliver" and cards:
            return self.answer(reference, quantity)
        return ProviderResult(outcome=Outcome.ACCEPTED, client_reference=reference, upstream_reference="U" + reference)

    def answer(self, reference: str, quantity: int) -> ProviderResult:
        if not self.charged.get(reference):
            return ProviderResult(outcome=Outcome.FAILED, client_reference=reference, message="失败")
        cards = tuple(CardSecretData(card_number=f"{reference}-{n}", pin=f"PIN{n}{reference[-4:]}")
                      for n in range(quantity))
        return ProviderResult(outcome=Outcome.SUCCEEDED, client_reference=reference, card_secrets=cards,
                              upstream_reference="U" + reference)


class FakeClient:
    """orders.services' view of an upstream client, answering from the Upstream model."""

    class config:
        callback_url = ""

    def __init__(self, upstream: Upstream):
        self.upstream = upstream

    def vip_charge(self, request: VipCharge, *, record=None):
        return self.upstream.receive(request.biz_code, request.product_code, 1, cards=False)

    def ecoupon(self, request: EcouponPurchase, *, record=None):
        return self.upstream.receive(request.req_stream_id, str(request.product_code), request.quantity, cards=True)

    def order_info(self, request: OrderInfoQuery, *, record=None):
        if request.biz_code not in self.upstream.sent:
            raise ProviderRejected("订单不存在", code="404")  # says nothing about the order
        return self.upstream.answer(request.biz_code, 0)

    def get_card_info(self, request: CardInfoQuery, *, record=None):
        stream_id = request.req_stream_id
        if stream_id not in self.upstream.sent:
            return ProviderResult(outcome=Outcome.ACCEPTED, client_reference=stream_id)  # 1015: not visible yet
        return self.upstream.answer(stream_id, self.upstream.bought[stream_id][1])


UPSTREAM: dict[str, Upstream] = {}


class MoneyRules(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        self.upstream = UPSTREAM["current"] = Upstream()
        self.users = {"clerk": make_user("p_clerk", FINANCE_CLERK), "supervisor_a": make_user("p_sup_a", FINANCE_SUPERVISOR),
                      "supervisor_b": make_user("p_sup_b", FINANCE_SUPERVISOR)}
        self.clients = {name: sign_in(Client(), user) for name, user in self.users.items()}
        self.distributor = make_distributor(code="P0001", name="性质测试商贸")
        self.other_distributor = make_distributor(code="P0002", name="另一家")
        fund(self.distributor, "3000.00")
        self.products = [
            Product.objects.create(provider=Provider.EXCHANGE, code="P-DC", name="直充", kind=OrderKind.DIRECT_CHARGE,
                                   sale_price=Decimal("22.00")),
            Product.objects.create(provider=Provider.BST17, code="10", name="话费卡 10", kind=OrderKind.GIFT_CARD,
                                   face_value=Decimal("10.00"), sale_price=Decimal("10.00")),
            Product.objects.create(provider=Provider.BST17, code="1000", name="购物卡 1000",
                                   kind=OrderKind.GIFT_CARD, face_value=Decimal("1000.00"), sale_price=Decimal("1000.00")),
        ]
        self.price_of = {product.code: product.sale_price for product in self.products}
        self.orders: list[int] = []
        self.transactions: list[int] = []
        self.makers: dict[int, set[int]] = {}
        self.delivered: list[tuple[str, dict]] = []  # callbacks the platform sent, for replaying
        self.placed_while_suspended: list[int] = []

    def teardown(self):
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)

    # --- orders -------------------------------------------------------------------------------

    @rule(user=st.sampled_from(["clerk", "supervisor_a"]), product=st.integers(0, 2), quantity=st.integers(1, 3))
    def create_order(self, user, product, quantity):
        product = self.products[product]
        quantity = 1 if product.kind == OrderKind.DIRECT_CHARGE else quantity
        try:
            order = order_create(distributor=self.distributor, product=product, actor=self.users[user],
                                 target_account="13800138000", quantity=quantity)
        except ValidationError:
            assert self.distributor.status != DistributorStatus.ACTIVE
            return
        self.orders.append(order.pk)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), user=st.sampled_from(["clerk", "supervisor_a", "supervisor_b"]), product=st.integers(0, 2),
          quantity=st.integers(1, 5))
    def edit_order_in_the_admin(self, data, user, product, quantity):
        order = RechargeOrder.objects.get(pk=data.draw(st.sampled_from(self.orders)))
        product = self.products[product]
        quantity = 1 if product.kind == OrderKind.DIRECT_CHARGE else quantity
        self.clients[user].post(reverse("admin:orders_rechargeorder_change", args=[order.pk]), {
            "distributor": order.distributor_id, "product": product.pk, "target_account": "13900139000",
            "mobile": "", "attach_values": "", "quantity": quantity, "face_value": "",
            "card_secrets-TOTAL_FORMS": "0", "card_secrets-INITIAL_FORMS": "0", "_save": "Save",
        })
        after = RechargeOrder.objects.get(pk=order.pk)
        if order.status != OrderStatus.DRAFT:
            assert (after.product_id, after.quantity, after.price_charged) == (
                order.product_id, order.quantity, order.price_charged)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), user=st.sampled_from(["clerk", "supervisor_b"]))
    def place(self, data, user):
        chosen = data.draw(st.lists(st.sampled_from(self.orders), min_size=1, max_size=4, unique=True))
        suspended = self.distributor.status != DistributorStatus.ACTIVE
        result = orders_place(ids=chosen, actor=self.users[user])
        if suspended:
            self.placed_while_suspended.extend(result.placed)

    def pending(self, *statuses):
        return list(RechargeOrder.objects.filter(pk__in=self.orders, status__in=statuses).values_list("pk", flat=True))

    @rule(behaviour=st.sampled_from(BEHAVIOURS))
    def worker_submits(self, behaviour):
        queued = self.pending(OrderStatus.QUEUED)
        if not queued:
            return
        self.upstream.behaviour = behaviour
        try:
            services.orders_submit(order_ids=queued)
        except ProviderNotReached:
            pass  # the job is retried later; its orders are queued again

    @rule(charged=st.booleans())
    def worker_dies_after_claiming(self, charged):
        queued = self.pending(OrderStatus.QUEUED)
        if not queued:
            return
        claimed = services._claim(queued[:1])
        if claimed and charged:  # it died after the request left
            order = RechargeOrder.objects.select_related("product").get(pk=claimed[0])
            self.upstream.behaviour = "accept then succeed"
            self.upstream.receive(order.client_reference, order.product.code, order.quantity, cards=False)

    @rule()
    def reconciliation_runs(self):
        orders_recover_stale_submissions(now=timezone.now() + datetime.timedelta(hours=1))
        for order_id in self.pending(OrderStatus.ACCEPTED, OrderStatus.UNKNOWN):
            order_query(order_id=order_id)

    @rule()
    def supervisor_decides_manual_reviews(self):
        for order in RechargeOrder.objects.filter(pk__in=self.orders, status=OrderStatus.MANUAL_REVIEW):
            # A person checks the upstream's console before deciding.
            order_resolve(order_id=order.pk, actor=self.users["supervisor_a"],
                          succeeded=self.upstream.charged.get(order.client_reference, False), note="已核对上游")

    @rule(data=st.data(), kind=st.sampled_from(CALLBACKS), claims_failure=st.booleans())
    def platform_calls_back(self, data, kind, claims_failure):
        sent = [o for o in RechargeOrder.objects.filter(pk__in=self.orders, provider=Provider.EXCHANGE)
                if o.client_reference in self.upstream.sent]
        if kind in ("replayed", "smuggled nonce"):
            if self.delivered:
                body, headers = data.draw(st.sampled_from(self.delivered))
                if kind == "smuggled nonce":  # the captured signType moved into the nonce: signs the same
                    headers = {**headers, "nonce": f"{headers['nonce']}&signType={headers['signType']}"}
                    del headers["signType"]
                self.deliver(body, headers)
            return
        if not sent:
            return
        order = data.draw(st.sampled_from(sent))
        truth = "SUCCESS" if self.upstream.charged[order.client_reference] else "FAILED"
        status = truth if kind == "valid" else ("FAILED" if claims_failure else "SUCCESS")
        body = json.dumps({"orderCode": "U" + order.client_reference, "bizCode": order.client_reference,
                           "status": status, "message": "回调"}, separators=(",", ":"))
        headers = {"businessId": exchange_support.BUSINESS_ID, "nonce": uuid.uuid4().hex,
                   "signType": "SHA256-RSA", "timestamp": str(int(time.time() * 1000))}
        if kind == "forged md5":
            headers["signType"] = "MD5"
            headers["sign"] = hashlib.md5(signing.string_to_sign(headers, body).encode()).hexdigest()
        else:
            key = exchange_support.PLATFORM_PRIVATE_KEY if kind != "forged key" else FORGER_KEY
            headers["sign"] = signing.sign_sha256_rsa(signing.string_to_sign(headers, body), key)
        if self.deliver(body, headers).status_code == 200 and kind == "valid":
            self.delivered.append((body, headers))

    def deliver(self, body, headers):
        return Client().post("/callbacks/exchange/", data=body, content_type="application/json", headers=headers)

    @rule()
    def distributor_suspended_or_reactivated(self):
        self.distributor.status = (DistributorStatus.SUSPENDED if self.distributor.status == DistributorStatus.ACTIVE
                                   else DistributorStatus.ACTIVE)
        self.distributor.save(update_fields=["status"])

    # --- fund transactions ----------------------------------------------------------------------

    @rule(user=st.sampled_from(["clerk", "supervisor_a"]), amount=st.decimals("0.01", "2000", places=2))
    def record_transaction(self, user, amount):
        created = fund_transaction_create(actor=self.users[user], distributor=self.distributor, type="recharge",
                                          amount=amount)
        self.transactions.append(created.pk)
        self.makers[created.pk] = {self.users[user].pk}

    @precondition(lambda self: self.transactions)
    @rule(data=st.data(), user=st.sampled_from(["clerk", "supervisor_a", "supervisor_b"]),
          amount=st.decimals("0.01", "99999", places=2), elsewhere=st.booleans())
    def edit_transaction_in_the_admin(self, data, user, amount, elsewhere):
        before = FundTransaction.objects.get(pk=data.draw(st.sampled_from(self.transactions)))
        distributor = self.other_distributor if elsewhere else before.distributor
        self.clients[user].post(reverse("admin:distributors_fundtransaction_change", args=[before.pk]), {
            "distributor": distributor.pk, "type": before.type, "amount": str(amount),
            "payment_channel": before.payment_channel, "payer_account": before.payer_account,
            "receiving_account": before.receiving_account, "voucher_no": before.voucher_no, "completed_at_0": "",
            "completed_at_1": "", "remark": "改", "erp_syncs-TOTAL_FORMS": "0", "erp_syncs-INITIAL_FORMS": "0",
            "_save": "Save",
        })
        after = FundTransaction.objects.get(pk=before.pk)
        if (after.amount, after.distributor_id) != (before.amount, before.distributor_id):
            assert before.status == FundTransactionStatus.DRAFT and not before.reverses_id
            self.makers[before.pk].add(self.users[user].pk)

    @precondition(lambda self: self.transactions)
    @rule()
    def submit_transactions(self):
        fund_transactions_submit(ids=self.transactions)

    @precondition(lambda self: self.transactions)
    @rule(data=st.data(), user=st.sampled_from(["supervisor_a", "supervisor_b"]))
    def approve_transaction(self, data, user):
        pk = data.draw(st.sampled_from(self.transactions))
        try:
            fund_transaction_approve(fund_transaction_id=pk, actor=self.users[user])
        except (PermissionDenied, ValidationError, InsufficientFunds):
            pass

    @precondition(lambda self: self.transactions)
    @rule(data=st.data(), user=st.sampled_from(["clerk", "supervisor_a"]))
    def reverse_transaction(self, data, user):
        try:
            reversal = fund_transaction_reverse(fund_transaction_id=data.draw(st.sampled_from(self.transactions)),
                                                actor=self.users[user])
        except ValidationError:
            return
        self.transactions.append(reversal.pk)
        self.makers[reversal.pk] = {self.users[user].pk}

    # --- what must hold after every step ---------------------------------------------------------

    @invariant()
    def every_balance_equals_its_ledger(self):
        for account in Account.objects.filter(distributor__in=[self.distributor, self.other_distributor]):
            total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"] or 0
            assert account.balance == total, account

    @invariant()
    def no_approval_by_anyone_who_set_a_money_field(self):
        for pk, decided_by in FundTransaction.objects.filter(
                pk__in=self.transactions, status=FundTransactionStatus.APPROVED).values_list("pk", "decided_by"):
            assert decided_by not in self.makers[pk], f"FT{pk} approved by one of its makers"

    @invariant()
    def no_money_released_for_what_the_upstream_charged(self):
        released = LedgerEntry.objects.filter(kind=EntryKind.ORDER_RELEASE).values_list("cause_id", flat=True)
        for order in RechargeOrder.objects.filter(pk__in=[int(pk) for pk in released]):
            assert not self.upstream.charged.get(order.client_reference, False), f"{order} charged and refunded"
        for order in RechargeOrder.objects.filter(pk__in=self.orders, status=OrderStatus.FAILED):
            assert not self.upstream.charged.get(order.client_reference, False), f"{order} charged but FAILED"

    @invariant()
    def no_order_reached_the_upstream_twice(self):
        assert all(count == 1 for count in self.upstream.sent.values()), self.upstream.sent

    @invariant()
    def what_is_held_is_the_price_of_what_was_bought(self):
        for order in RechargeOrder.objects.filter(pk__in=self.orders, client_reference__in=list(self.upstream.bought)):
            product_code, quantity = self.upstream.bought[order.client_reference]
            held = -(LedgerEntry.objects.filter(kind=EntryKind.ORDER_HOLD, cause_id=str(order.pk))
                     .aggregate(total=Sum("amount"))["total"] or 0)
            assert held == self.price_of[product_code] * quantity, f"{order} holds {held} for {quantity} x {product_code}"

    @invariant()
    def nothing_placed_for_a_suspended_distributor(self):
        assert self.placed_while_suspended == []


FORGER_KEY = signing.generate_private_key_pem()


def test_no_sequence_of_steps_moves_money_outside_the_rules(settings, monkeypatch):
    settings.PROVIDERS = provider_accounts({**exchange_support.environment(), **bst17_support.environment()})
    settings.ORDER_QUERY_MAX_ATTEMPTS = 2
    monkeypatch.setattr(services, "_client", lambda order: FakeClient(UPSTREAM["current"]))

    run_state_machine_as_test(MoneyRules, settings=hypothesis_settings(
        # derandomize: the same sequences on every run, so a CI failure can be reproduced; database=None:
        # no example store written into the checkout.
        max_examples=20, stateful_step_count=30, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))
