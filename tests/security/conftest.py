"""A small world with one row of every kind the admin shows, and a way to prove nothing changed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.db import router
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from config.imports import file_import_check, file_import_create
from config.models import FileJobKind
from config.roles import FINANCE_CLERK, FINANCE_SUPERVISOR
from distributors.fund_transactions import fund_transaction_approve, fund_transaction_create, fund_transactions_submit
from distributors.models import ErpSync, SyncStatus
from distributors.services import ledger_balance_check
from orders.models import OrderKind, OrderStatus, Product, RechargeOrder, UpstreamBalance
from orders.services import (
    BatchItemData,
    _store_cards,
    batch_create,
    batch_place,
    callback_nonce_accept,
    card_secret_reveal,
    order_create,
    orders_place,
)
from providers.models import Provider, ProviderCall
from providers.results import CardSecretData
from tests.factories import fund, make_distributor, make_user

# Everything an intruder could change through the admin: business rows, their history, the job
# queue, users and groups, lockouts and second-factor devices. Sessions change on every request.
# Orders: products, orders, batches, card secrets, PIN disclosures, callback nonces, upstream balances
# and their history (the ledger entries orders post are in "distributors"). "backoffice": the file
# jobs (every import and export) and their history.
WATCHED_APPS = {
    "auth", "backoffice", "distributors", "orders", "providers", "procrastinate", "axes", "otp_totp", "otp_static",
    "pghistory",
}
UNWATCHED_MODELS = {"pghistory.Events", "pghistory.MiddlewareEvents"}


def snapshot() -> dict[str, list[dict]]:
    """Every row of every watched table, in order: balances, statuses, history events, jobs, users."""
    state = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label not in WATCHED_APPS or model._meta.label in UNWATCHED_MODELS:
            continue
        rows = model._default_manager.using(router.db_for_read(model)).order_by("pk").values()
        state[model._meta.label] = list(rows)
    return state


def draft(clerk, distributor, **fields):
    values = {
        "distributor": distributor, "type": "recharge", "amount": Decimal("1000.00"),
        "payment_channel": "bank_transfer", "payer_account": "6222020000000001",
        "receiving_account": "6222029999999999", "completed_at": timezone.now(), "remark": "银行转账",
    }
    return fund_transaction_create(actor=clerk, **{**values, **fields})


# The PINs of the world's cards: no response to an intruder may contain them.
WORLD_PINS = ("830117264459", "274400918362")


def orders_world(clerk, supervisor, distributor) -> dict:
    """Products, orders in every state a person acts on, batches (draft and placed), cards, a disclosure."""
    direct = Product.objects.create(
        provider=Provider.EXCHANGE, code="SEC-87103", name="安全测试直充", kind=OrderKind.DIRECT_CHARGE,
        face_value=Decimal("25.00"), cost_price=Decimal("20.00"), sale_price=Decimal("22.00"),
    )
    gift = Product.objects.create(
        provider=Provider.BST17, code="SEC-12", name="安全测试礼品卡", kind=OrderKind.GIFT_CARD,
        face_value=Decimal("100.00"), cost_price=Decimal("97.00"), sale_price=Decimal("98.00"),
    )
    draft_order = order_create(distributor=distributor, product=direct, actor=clerk, target_account="13800000001")
    queued = order_create(distributor=distributor, product=direct, actor=clerk, target_account="13800000002")
    review = order_create(distributor=distributor, product=direct, actor=clerk, target_account="13800000003")
    delivered = order_create(distributor=distributor, product=gift, actor=clerk, quantity=len(WORLD_PINS))
    placed = orders_place(ids=[queued.pk, review.pk, delivered.pk], actor=clerk)
    assert placed.refused == {}, placed.refused
    RechargeOrder.objects.filter(pk=review.pk).update(status=OrderStatus.MANUAL_REVIEW)
    RechargeOrder.objects.filter(pk=delivered.pk).update(status=OrderStatus.SUCCEEDED)
    _store_cards(delivered, [CardSecretData(card_number=f"SEC-CARD-{i}", pin=pin) for i, pin in enumerate(WORLD_PINS)])
    draft_batch = batch_create(distributor=distributor, product=direct, actor=clerk, batch_code="SEC-B-DRAFT",
                               items=[BatchItemData("13900000001"), BatchItemData("13900000002")])
    placed_batch = batch_create(distributor=distributor, product=direct, actor=clerk, batch_code="SEC-B-PLACED",
                                items=[BatchItemData("13900000003")])
    batch_place(batch_id=placed_batch.pk, actor=clerk)
    cards = list(delivered.card_secrets.order_by("pk"))
    card_secret_reveal(card_secret=cards[0], actor=supervisor)
    assert callback_nonce_accept(provider=Provider.EXCHANGE, nonce="sec-nonce-1")
    balance = UpstreamBalance.objects.create(
        provider=Provider.BST17, credit=Decimal("5000.00"), frozen=Decimal("0.00"), commission=Decimal("1.00"),
    )
    # A batch file the world's clerk uploaded and had checked: clean, waiting for them to confirm it.
    batch_import = file_import_create(
        kind=FileJobKind.ORDER_BATCH_IMPORT, actor=clerk, filename="world.csv", content="充值账号\n13900000009\n".encode(),
        language="en", options={"distributor_id": distributor.pk, "product_id": direct.pk, "batch_code": "",
                                "remark": ""},
    )
    file_import_check(file_job_id=batch_import.pk)
    batch_import.refresh_from_db()
    assert batch_import.can_confirm, batch_import.errors
    return {
        "products": [direct, gift], "draft_order": draft_order, "queued_order": queued, "review_order": review,
        "delivered_order": delivered, "draft_batch": draft_batch, "placed_batch": placed_batch, "cards": cards,
        "disclosure": cards[0].disclosures.get(), "upstream_balance": balance, "batch_import": batch_import,
    }


@pytest.fixture
def world():
    """One row of each kind, fund transactions in every state, syncs awaiting a person."""
    clerk = make_user("world_clerk", FINANCE_CLERK)
    supervisor = make_user("world_supervisor", FINANCE_SUPERVISOR)
    distributor = make_distributor(
        code="SEC001", name="安全测试商贸", kept_in_best_gerp=True, best_gerp_customer_name="QY-SEC",
        kept_in_wdt=True, wdt_nick_no="FX-SEC", wdt_nick_name="安全测试",
    )
    fund(distributor, "500.00")
    drafted = draft(clerk, distributor, voucher_no="SEC-V1")
    pending = draft(clerk, distributor, voucher_no="SEC-V2")
    approved = draft(clerk, distributor, voucher_no="SEC-V3")
    assert fund_transactions_submit(ids=[pending.pk, approved.pk]).refused == {}
    fund_transaction_approve(fund_transaction_id=approved.pk, actor=supervisor)
    failed_sync, review_sync = ErpSync.objects.filter(fund_transaction=approved).order_by("pk")
    ErpSync.objects.filter(pk=failed_sync.pk).update(status=SyncStatus.FAILED)
    ErpSync.objects.filter(pk=review_sync.pk).update(status=SyncStatus.MANUAL_REVIEW)
    call = ProviderCall.objects.create(provider="best_gerp", operation="recharge", url="http://127.0.0.1:1/")
    check = ledger_balance_check(triggered_by="test")
    from axes.models import AccessAttempt

    attempt = AccessAttempt.objects.create(
        username="someone", ip_address="10.0.0.9", user_agent="test", failures_since_start=9,
        get_data="", post_data="", http_accept="*/*", path_info="/admin/login/",
    )
    totp = TOTPDevice.objects.create(user=supervisor, name="phone", confirmed=True)
    static = StaticDevice.objects.create(user=supervisor, name="backup", confirmed=True)
    return {
        **orders_world(clerk, supervisor, distributor),
        "clerk": clerk, "supervisor": supervisor, "distributor": distributor, "account": distributor.accounts.first(),
        "ledger_entry": distributor.accounts.get(kind="prepaid").entries.first(), "draft": drafted,
        "pending": pending, "approved": approved, "failed_sync": failed_sync, "review_sync": review_sync,
        "provider_call": call, "balance_check": check, "access_attempt": attempt, "totp_device": totp,
        "static_device": static, "group": Group.objects.get(name=FINANCE_SUPERVISOR),
    }
