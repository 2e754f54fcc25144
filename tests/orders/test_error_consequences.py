"""A failed upstream call releases money (or allows a resend) only when nothing was carried out.

providers.exceptions.consequence_of is the one rule; orders, ERP syncs and the call log follow it.
The attack it closes: a wrong BST17_CARD_KEY made an answered 1000 (cards delivered, money spent
upstream) FAILED, and refunded the distributor.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

import providers.best_gerp.client
import providers.bst17.client
import providers.exchange.client
import providers.wdt.client  # noqa: F401  (every vendor's exception classes are defined once imported)
from config.provider_settings import provider_accounts
from distributors.erp_sync import erp_sync_submit
from distributors.fund_transactions import fund_transaction_approve, fund_transactions_submit
from distributors.models import Account, EntryKind, ErpSync, FundTransactionType, LedgerEntry, SyncStatus
from distributors.services import ledger_balance_check
from orders import services
from orders.models import CardSecret, OrderStatus
from orders.services import order_create, order_query, orders_place, orders_submit
from providers.bst17.client import Bst17QueryTooFrequent
from providers.exceptions import (
    Consequence,
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    ProviderMisconfigured,
    ProviderNotReached,
    ProviderRejected,
    SignatureInvalid,
    consequence_of,
)
from providers.sandbox import bst17 as sandbox_bst17
from tests.factories import make_user

pytestmark = pytest.mark.django_db

SEND_AGAIN, NOT_CARRIED_OUT, MAYBE = Consequence.SEND_AGAIN, Consequence.NOT_CARRIED_OUT, Consequence.MAYBE_CARRIED_OUT

# Every class of the tree: (raised before anything was sent, raised once the request had left).
EXPECTED = {
    ProviderError: (MAYBE, MAYBE),
    ProviderNotReached: (SEND_AGAIN, SEND_AGAIN),
    ProviderRejected: (NOT_CARRIED_OUT, NOT_CARRIED_OUT),
    Bst17QueryTooFrequent: (MAYBE, MAYBE),
    OutcomeUnknown: (MAYBE, MAYBE),
    SignatureInvalid: (MAYBE, MAYBE),
    ProviderMisconfigured: (NOT_CARRIED_OUT, MAYBE),
    InvalidRequest: (NOT_CARRIED_OUT, MAYBE),
}


def every_provider_error_class() -> set[type]:
    found, pending = set(), [ProviderError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def raised(cls: type, *, sent: bool) -> ProviderError:
    err = cls("问题", code="1001") if issubclass(cls, ProviderRejected) else cls("问题")
    err.sent = sent
    return err


def test_every_exception_class_has_a_stated_consequence():
    assert every_provider_error_class() == set(EXPECTED)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda cls: cls.__name__)
def test_the_consequence_of_each_exception_class(cls):
    before, after = EXPECTED[cls]
    assert consequence_of(raised(cls, sent=False)) is before
    assert consequence_of(raised(cls, sent=True)) is after


def test_a_refusal_that_does_not_prove_nothing_was_done_holds_the_money():
    duplicate = ProviderRejected("商户请求流水号重复", code="1016", proves_not_carried_out=False)
    assert consequence_of(duplicate) is MAYBE


def prepaid(distributor) -> Decimal:
    return Account.objects.get(distributor=distributor, kind="prepaid").balance


class FailingClient:
    """An upstream client whose every call fails with `err` (built fresh per order)."""

    class config:
        callback_url = ""

    def __init__(self, err: ProviderError):
        self.err = err

    def vip_charge(self, _request, **_kwargs):
        raise self.err

    ecoupon = vip_charge


STATUS_AND_RELEASE = {
    SEND_AGAIN: (OrderStatus.QUEUED, False),
    NOT_CARRIED_OUT: (OrderStatus.FAILED, True),
    MAYBE: (OrderStatus.UNKNOWN, False),
}


@pytest.mark.parametrize("sent", [False, True], ids=["before sending", "after sending"])
@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda cls: cls.__name__)
def test_an_order_whose_call_failed_releases_its_hold_only_if_nothing_was_carried_out(
        monkeypatch, clerk, distributor, gift_card_product, cls, sent):
    order = order_create(distributor=distributor, product=gift_card_product, actor=clerk)
    orders_place(ids=[order.pk], actor=clerk)
    err = raised(cls, sent=sent)
    monkeypatch.setattr(services, "_client", lambda order: FailingClient(err))
    expected_status, released = STATUS_AND_RELEASE[EXPECTED[cls][sent]]

    try:
        services.orders_submit(order_ids=[order.pk])
    except ProviderNotReached:
        assert expected_status == OrderStatus.QUEUED  # raised so the job is retried later

    order.refresh_from_db()
    assert order.status == expected_status
    assert LedgerEntry.objects.filter(kind=EntryKind.ORDER_RELEASE).exists() is released
    assert prepaid(distributor) == (Decimal("1000.00") if released else Decimal("901.50"))
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_cards_delivered_under_a_wrong_card_key_keep_the_money_held_until_they_are_read(
        monkeypatch, sandbox, sandbox_environment, settings, clerk, distributor, gift_card_product):
    # The in-process sandbox reads the same settings: it keeps encrypting with the platform's real key.
    platform_config = providers.bst17.client.Bst17Settings.for_account("default")
    monkeypatch.setattr(sandbox_bst17, "Bst17Settings", type("Fixed", (), {
        "for_account": staticmethod(lambda account: platform_config)}))
    settings.PROVIDERS = provider_accounts({**sandbox_environment, "BST17_CARD_KEY": "NotTheKey1"})
    order = order_create(distributor=distributor, product=gift_card_product, actor=clerk, quantity=2)
    orders_place(ids=[order.pk], actor=clerk)

    assert orders_submit(order_ids=[order.pk]) == {order.pk: OrderStatus.UNKNOWN}

    order.refresh_from_db()
    assert "BST17_CARD_KEY" in order.status_reason
    assert prepaid(distributor) == Decimal("803.00")  # 1000 - 2 x 98.50: still held, not refunded
    assert not LedgerEntry.objects.filter(kind=EntryKind.ORDER_RELEASE).exists()
    # The key is put right: the query reads the delivered cards, and nothing was bought twice.
    settings.PROVIDERS = provider_accounts(sandbox_environment)
    assert order_query(order_id=order.pk) == OrderStatus.SUCCEEDED
    assert CardSecret.objects.filter(order=order).count() == 2
    assert sandbox.vendor("bst17").ecoupon_requests[order.client_reference] == 1
    assert prepaid(distributor) == Decimal("803.00")


@pytest.mark.parametrize(("cls", "status"), [
    (SignatureInvalid, SyncStatus.MANUAL_REVIEW),
    (OutcomeUnknown, SyncStatus.MANUAL_REVIEW),
    (ProviderRejected, SyncStatus.FAILED),
])
def test_an_erp_sync_is_failed_and_retryable_only_when_the_erp_certainly_recorded_nothing(
        monkeypatch, clerk, distributor, cls, status):
    distributor.kept_in_best_gerp, distributor.best_gerp_customer_name = True, "客户"
    distributor.save()
    from distributors.fund_transactions import fund_transaction_create

    recharge = fund_transaction_create(actor=clerk, distributor=distributor, type=FundTransactionType.RECHARGE,
                                       amount=Decimal("10.00"))
    fund_transactions_submit(ids=[recharge.pk])
    fund_transaction_approve(fund_transaction_id=recharge.pk, actor=make_user("checker"))
    sync = ErpSync.objects.get()

    def answer_read_badly(self, *args, **kwargs):
        raise raised(cls, sent=True)

    monkeypatch.setattr(providers.best_gerp.client.BestGerpClient, "__init__", lambda self, **kw: None)
    monkeypatch.setattr(providers.best_gerp.client.BestGerpClient, "recharge_refund", answer_read_badly)

    assert erp_sync_submit(erp_sync_id=sync.pk) == status
