"""Fund transactions: record, submit, approve (maker-checker), ledger, and ERP syncs via the sandbox."""

from __future__ import annotations

import re
import threading
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone, translation
from procrastinate.contrib.django.models import ProcrastinateJob

from config.provider_settings import provider_accounts
from config.roles import FINANCE_SUPERVISOR
from distributors.erp_sync import erp_sync_resolve, erp_sync_retry, erp_sync_submit
from distributors.exceptions import InsufficientFunds
from distributors.fund_transactions import (
    TransitionRefused,
    fund_transaction_approve,
    fund_transaction_create,
    fund_transaction_reject,
    fund_transaction_reverse,
    fund_transactions_submit,
)
from distributors.models import (
    Account,
    ErpSync,
    FundTransaction,
    FundTransactionStatus,
    LedgerEntry,
    SyncStatus,
)
from distributors.services import ledger_balance_check
from providers.models import ProviderCall
from providers.sandbox.server import Fault
from tests.factories import make_distributor, make_user, sign_in, verify_second_factor

pytestmark = pytest.mark.django_db


@pytest.fixture
def distributor():
    return make_distributor(
        code="FX9001", name="测试商贸", kept_in_best_gerp=True, best_gerp_customer_name="QY9001",
        kept_in_wdt=True, wdt_nick_no="FX9001", wdt_nick_name="测试商贸",
    )


def record(clerk, distributor, **fields):
    values = {
        "distributor": distributor, "type": "recharge", "amount": Decimal("1000.00"),
        "payment_channel": "bank_transfer", "payer_account": "6222020000000001",
        "receiving_account": "6222029999999999", "voucher_no": f"V{FundTransaction.objects.count() + 1:06d}",
        "completed_at": timezone.now(), "remark": "银行转账",
    }
    return fund_transaction_create(actor=clerk, **{**values, **fields})


def submitted(clerk, distributor, **fields):
    fund_transaction = record(clerk, distributor, **fields)
    result = fund_transactions_submit(ids=[fund_transaction.pk])
    assert result.refused == {}
    fund_transaction.refresh_from_db()
    return fund_transaction


def prepaid(distributor) -> Decimal:
    return Account.objects.get(distributor=distributor, kind="prepaid").balance


def test_validation_names_the_field_and_the_reason_in_chinese(clerk, distributor):
    chinese = re.compile(r"[\u4e00-\u9fff]")
    with translation.override("zh-hans"):
        for amount in (Decimal("0"), Decimal("-5"), Decimal("1.234")):
            with pytest.raises(ValidationError) as invalid:
                record(clerk, distributor, amount=amount)
            assert list(invalid.value.message_dict) == ["amount"]
            assert chinese.search(invalid.value.message_dict["amount"][0]), invalid.value.message_dict
        record(clerk, distributor, voucher_no="DUP1")
        with pytest.raises(ValidationError) as duplicate:
            record(clerk, distributor, voucher_no="DUP1")
    assert chinese.search(" ".join(duplicate.value.messages)), duplicate.value.messages
    assert FundTransaction.objects.count() == 1


def test_a_clerk_cannot_approve_and_nobody_approves_their_own_work(clerk, supervisor, distributor):
    fund_transaction = submitted(clerk, distributor)

    with pytest.raises(PermissionDenied):
        fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=clerk)
    own = submitted(supervisor, distributor)
    with pytest.raises(PermissionDenied):
        fund_transaction_approve(fund_transaction_id=own.pk, actor=supervisor)

    assert LedgerEntry.objects.count() == 0


def test_approval_posts_the_ledger_and_queues_one_sync_per_erp_in_one_transaction(clerk, supervisor, distributor):
    fund_transaction = submitted(clerk, distributor)

    fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)

    fund_transaction.refresh_from_db()
    assert fund_transaction.status == FundTransactionStatus.APPROVED
    assert prepaid(distributor) == Decimal("1000.00")
    [entry] = LedgerEntry.objects.all()
    assert entry.cause == fund_transaction and entry.created_by == supervisor
    syncs = ErpSync.objects.filter(fund_transaction=fund_transaction)
    assert sorted(syncs.values_list("target", "status")) == [("best_gerp", "queued"), ("wdt", "queued")]
    jobs = ProcrastinateJob.objects.filter(task_name="distributors.submit_erp_sync")
    assert sorted(job.args["erp_sync_id"] for job in jobs) == sorted(syncs.values_list("pk", flat=True))


def test_an_approval_that_would_cross_the_floor_changes_nothing(clerk, supervisor, distributor):
    refund = submitted(clerk, distributor, type="refund", amount=Decimal("10.00"))

    with pytest.raises(InsufficientFunds):
        fund_transaction_approve(fund_transaction_id=refund.pk, actor=supervisor)

    refund.refresh_from_db()
    assert refund.status == FundTransactionStatus.PENDING_APPROVAL
    assert not ErpSync.objects.exists() and not LedgerEntry.objects.exists()


def test_rejection_needs_a_reason_and_moves_no_money(clerk, supervisor, distributor):
    fund_transaction = submitted(clerk, distributor)

    with pytest.raises(ValidationError):
        fund_transaction_reject(fund_transaction_id=fund_transaction.pk, actor=supervisor, reason="  ")
    fund_transaction_reject(fund_transaction_id=fund_transaction.pk, actor=supervisor, reason="凭证不清晰")

    fund_transaction.refresh_from_db()
    assert fund_transaction.status == FundTransactionStatus.REJECTED
    assert fund_transaction.rejection_reason == "凭证不清晰"
    with pytest.raises(TransitionRefused):
        fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)
    assert not LedgerEntry.objects.exists()


def test_a_draft_its_erp_would_refuse_stays_a_draft_with_the_reason(clerk, distributor):
    distributor.wdt_nick_no = ""
    distributor.save()
    fund_transaction = record(clerk, distributor)

    result = fund_transactions_submit(ids=[fund_transaction.pk])

    assert result.submitted == 0
    with translation.override("en"):
        assert "Wangdiantong" in fund_transactions_submit(ids=[fund_transaction.pk]).refused[fund_transaction.pk]
    assert result.refused[fund_transaction.pk]
    fund_transaction.refresh_from_db()
    assert fund_transaction.status == FundTransactionStatus.DRAFT


def test_nothing_past_draft_can_be_edited_in_the_admin(client, clerk, supervisor, distributor):
    fund_transaction = submitted(clerk, distributor)
    fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)
    sign_in(client, supervisor)
    verify_second_factor(client, supervisor)

    response = client.post(
        reverse("admin:distributors_fundtransaction_change", args=[fund_transaction.pk]),
        {"amount": "999999.00"},
    )

    assert response.status_code == 403
    fund_transaction.refresh_from_db()
    assert fund_transaction.amount == Decimal("1000.00")


def test_approval_in_the_admin_asks_for_confirmation_first(client, clerk, supervisor, distributor):
    fund_transaction = submitted(clerk, distributor)
    sign_in(client, supervisor)
    verify_second_factor(client, supervisor)
    url = reverse("admin:distributors_fundtransaction_changelist")
    selection = {"action": "approve", "_selected_action": [fund_transaction.pk]}

    confirmation = client.post(url, selection)
    assert confirmation.status_code == 200
    assert str(fund_transaction) in confirmation.content.decode()
    assert prepaid(distributor) == Decimal("0.00")

    done = client.post(url, {**selection, "confirmed": "yes"}, follow=True)
    assert prepaid(distributor) == Decimal("1000.00")
    assert any("approved" in str(m) or "已批准" in str(m) for m in done.context["messages"])


def approve_and_sync(clerk, supervisor, distributor, **fields):
    fund_transaction = submitted(clerk, distributor, **fields)
    fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)
    syncs = {s.target: s for s in ErpSync.objects.filter(fund_transaction=fund_transaction)}
    return fund_transaction, syncs


def test_both_erp_syncs_succeed_against_the_sandbox_and_the_call_log_tells_the_story(
    sandbox, clerk, supervisor, distributor
):
    fund_transaction, syncs = approve_and_sync(clerk, supervisor, distributor)

    assert erp_sync_submit(erp_sync_id=syncs["best_gerp"].pk) == SyncStatus.SUCCEEDED
    assert erp_sync_submit(erp_sync_id=syncs["wdt"].pk) == SyncStatus.SUCCEEDED

    wdt_order = sandbox.vendor("wdt").orders[syncs["wdt"].client_reference]
    assert Decimal(str(wdt_order["amount"])) == Decimal("1000.00") and wdt_order["type"] == 1
    [best_record] = sandbox.vendor("best_gerp").records_for("QY9001")
    assert best_record["type"] == "RECHARGE"
    calls = ProviderCall.objects.filter(record_type="distributors.erpsync")
    assert sorted(calls.values_list("provider", "outcome")) == [("best_gerp", "succeeded"), ("wdt", "succeeded")]
    assert ledger_balance_check(triggered_by="test").mismatches == []


def test_a_rejected_sync_fails_with_the_vendor_message_and_a_retry_sends_it_again(
    sandbox, clerk, supervisor, distributor
):
    _, syncs = approve_and_sync(clerk, supervisor, distributor)
    sandbox.add_fault(Fault(vendor="wdt", kind="reject", code="100", message="分销商编号不能为空"))

    assert erp_sync_submit(erp_sync_id=syncs["wdt"].pk) == SyncStatus.FAILED
    syncs["wdt"].refresh_from_db()
    assert "分销商编号不能为空" in syncs["wdt"].last_error

    assert erp_sync_retry(erp_sync_id=syncs["wdt"].pk)
    assert erp_sync_submit(erp_sync_id=syncs["wdt"].pk) == SyncStatus.SUCCEEDED
    syncs["wdt"].refresh_from_db()
    assert syncs["wdt"].attempts == 2


def test_a_sync_to_an_unconfigured_merchant_account_fails_naming_the_variable_and_the_other_erp_is_still_told(
    sandbox, sandbox_environment, settings, clerk, supervisor, distributor
):
    settings.PROVIDERS = provider_accounts({**sandbox_environment, "WDT_ACCOUNTS": "east"})
    distributor.wdt_merchant = "east"  # an account with no credentials
    distributor.save()
    _, syncs = approve_and_sync(clerk, supervisor, distributor)

    assert erp_sync_submit(erp_sync_id=syncs["wdt"].pk) == SyncStatus.FAILED  # nothing was sent: retryable
    assert erp_sync_submit(erp_sync_id=syncs["best_gerp"].pk) == SyncStatus.SUCCEEDED
    syncs["wdt"].refresh_from_db()
    assert "WDT_EAST_BASE_URL" in syncs["wdt"].last_error
    assert list(ProviderCall.objects.values_list("provider", flat=True)) == ["best_gerp"]


def test_a_timeout_after_sending_goes_to_manual_review_and_is_never_resent(
    sandbox, settings, clerk, supervisor, distributor
):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    _, syncs = approve_and_sync(clerk, supervisor, distributor)
    sandbox.add_fault(Fault(vendor="best_gerp", kind="timeout", delay_ms=1000))

    assert erp_sync_submit(erp_sync_id=syncs["best_gerp"].pk) == SyncStatus.MANUAL_REVIEW
    assert erp_sync_submit(erp_sync_id=syncs["best_gerp"].pk) == SyncStatus.MANUAL_REVIEW  # a second job: nothing sent
    assert len(sandbox.vendor("best_gerp").received_for("QY9001")) == 1

    assert erp_sync_resolve(erp_sync_id=syncs["best_gerp"].pk, actor=supervisor, arrived=True, note="ERP里有这笔")
    syncs["best_gerp"].refresh_from_db()
    assert syncs["best_gerp"].status == SyncStatus.SUCCEEDED
    assert syncs["best_gerp"].reviewed_by == supervisor


def test_a_manual_review_decided_as_not_arrived_sends_again(sandbox, settings, clerk, supervisor, distributor):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    _, syncs = approve_and_sync(clerk, supervisor, distributor)
    sandbox.add_fault(Fault(vendor="best_gerp", kind="http_500"))
    assert erp_sync_submit(erp_sync_id=syncs["best_gerp"].pk) == SyncStatus.MANUAL_REVIEW

    assert erp_sync_resolve(erp_sync_id=syncs["best_gerp"].pk, actor=supervisor, arrived=False, note="ERP里没有")
    assert erp_sync_submit(erp_sync_id=syncs["best_gerp"].pk) == SyncStatus.SUCCEEDED
    assert len(sandbox.vendor("best_gerp").records_for("QY9001")) == 1


def test_an_unreachable_erp_leaves_the_sync_queued_for_a_safe_retry(settings, sandbox, clerk, supervisor, distributor):
    from config.provider_settings import provider_accounts
    from providers.exceptions import ProviderNotReached
    from tests.conftest import closed_port_url

    _, syncs = approve_and_sync(clerk, supervisor, distributor)
    environment = {**sandbox_environment_of(settings), "WDT_BASE_URL": closed_port_url()}
    settings.PROVIDERS = provider_accounts(environment)

    with pytest.raises(ProviderNotReached):
        erp_sync_submit(erp_sync_id=syncs["wdt"].pk)
    syncs["wdt"].refresh_from_db()
    assert syncs["wdt"].status == SyncStatus.QUEUED


def sandbox_environment_of(settings) -> dict[str, str]:
    return {
        spec["variable"]: spec["value"]
        for accounts in settings.PROVIDERS.values()
        for fields in accounts.values()
        for spec in fields.values()
        if spec["value"]
    }


def test_a_reversal_undoes_the_ledger_and_tells_the_erp_the_opposite_movement(
    sandbox, clerk, supervisor, distributor
):
    original, syncs = approve_and_sync(clerk, supervisor, distributor)
    for sync in syncs.values():
        erp_sync_submit(erp_sync_id=sync.pk)

    reversal = fund_transaction_reverse(fund_transaction_id=original.pk, actor=clerk)
    fund_transactions_submit(ids=[reversal.pk])
    fund_transaction_approve(fund_transaction_id=reversal.pk, actor=supervisor)
    for sync in ErpSync.objects.filter(fund_transaction=reversal):
        assert erp_sync_submit(erp_sync_id=sync.pk) == SyncStatus.SUCCEEDED

    assert prepaid(distributor) == Decimal("0.00")
    wdt_reversal = sandbox.vendor("wdt").orders[f"FT{reversal.pk:010d}"]
    assert wdt_reversal["type"] == 3  # a deduction undoes a recharge
    assert [r["type"] for r in sandbox.vendor("best_gerp").records_for("QY9001")] == ["RECHARGE", "REFUND"]
    with pytest.raises(TransitionRefused):
        fund_transaction_reverse(fund_transaction_id=original.pk, actor=clerk)


@pytest.mark.django_db(transaction=True)
def test_two_supervisors_approving_at_once_give_one_posting(clerk, distributor):
    supervisors = [make_user(f"supervisor{i}", FINANCE_SUPERVISOR) for i in range(2)]
    fund_transaction = submitted(clerk, distributor)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def approve(actor):
        try:
            barrier.wait()
            fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=actor)
            outcomes.append("approved")
        except TransitionRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(s,)) for s in supervisors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["approved", "refused"]
    assert LedgerEntry.objects.count() == 1
    assert ErpSync.objects.count() == 2
    assert prepaid(distributor) == Decimal("1000.00")


@pytest.mark.django_db(transaction=True)
def test_two_workers_submitting_the_same_sync_make_one_upstream_call(sandbox, clerk, supervisor, distributor):
    _, syncs = approve_and_sync(clerk, supervisor, distributor)
    barrier = threading.Barrier(4)
    results: list[str] = []

    def submit():
        try:
            barrier.wait()
            results.append(erp_sync_submit(erp_sync_id=syncs["wdt"].pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(sandbox.vendor("wdt").received_for(syncs["wdt"].client_reference)) == 1
    assert ProviderCall.objects.filter(provider="wdt").count() == 1
    syncs["wdt"].refresh_from_db()
    assert syncs["wdt"].status == SyncStatus.SUCCEEDED and syncs["wdt"].attempts == 1
