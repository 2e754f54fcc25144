"""Maker-checker holds for whoever set the money: editors are makers, reversals mirror their original.

The attacks: a supervisor edits a clerk's 10.00 draft to 99,999.00, submits and approves it alone;
a reversal draft edited into another transaction; an edit racing an approval.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from config.roles import FINANCE_SUPERVISOR
from distributors.forms import FundTransactionForm
from distributors.fund_transactions import (
    TransitionRefused,
    fund_transaction_approve,
    fund_transaction_create,
    fund_transaction_reject,
    fund_transaction_reverse,
    fund_transaction_update,
    fund_transactions_submit,
)
from distributors.models import Account, FundTransaction, FundTransactionStatus, FundTransactionType
from tests.factories import make_distributor, make_user, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_supervisor():
    return make_user("supervisor2", FINANCE_SUPERVISOR)


@pytest.fixture
def distributor():
    return make_distributor(code="MC0001", name="制衡商贸")


def prepaid(distributor) -> Decimal:
    return Account.objects.get(distributor=distributor, kind="prepaid").balance


def draft(clerk, distributor, amount="10.00") -> FundTransaction:
    return fund_transaction_create(actor=clerk, distributor=distributor, type=FundTransactionType.RECHARGE,
                                   amount=Decimal(amount), voucher_no=f"V{amount}")


def change_form_data(fund_transaction, **changes) -> dict:
    data = {
        "distributor": fund_transaction.distributor_id, "type": fund_transaction.type,
        "amount": fund_transaction.amount, "payment_channel": fund_transaction.payment_channel,
        "payer_account": fund_transaction.payer_account, "receiving_account": fund_transaction.receiving_account,
        "voucher_no": fund_transaction.voucher_no, "completed_at_0": "", "completed_at_1": "",
        "remark": fund_transaction.remark, "erp_syncs-TOTAL_FORMS": "0", "erp_syncs-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    return {**data, **changes}


def test_a_supervisor_who_raised_a_clerks_draft_cannot_approve_it(client, clerk, supervisor, other_supervisor,
                                                                 distributor):
    fund_transaction = draft(clerk, distributor)
    sign_in(client, supervisor)

    edited = client.post(reverse("admin:distributors_fundtransaction_change", args=[fund_transaction.pk]),
                         change_form_data(fund_transaction, amount="99999.00"))
    fund_transactions_submit(ids=[fund_transaction.pk])
    with pytest.raises(PermissionDenied):
        fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)
    with pytest.raises(PermissionDenied):
        fund_transaction_reject(fund_transaction_id=fund_transaction.pk, actor=supervisor, reason="我改的")

    assert edited.status_code == 302
    fund_transaction.refresh_from_db()
    assert fund_transaction.amount == Decimal("99999.00")
    assert fund_transaction.status == FundTransactionStatus.PENDING_APPROVAL and prepaid(distributor) == 0
    # A second pair of eyes that set no money may approve it.
    fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=other_supervisor)
    assert prepaid(distributor) == Decimal("99999.00")


@pytest.mark.parametrize("field, value", [
    ("type", FundTransactionType.REBATE), ("payer_account", "6222000011112222"),
    ("receiving_account", "6222999988887777"), ("payment_channel", "alipay"),
])
def test_every_money_field_makes_a_maker(clerk, supervisor, distributor, field, value):
    fund_transaction = draft(clerk, distributor)
    fund_transaction_update(fund_transaction_id=fund_transaction.pk, actor=supervisor, **{field: value})
    fund_transactions_submit(ids=[fund_transaction.pk])

    with pytest.raises(PermissionDenied):
        fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)


def test_moving_a_draft_to_another_distributor_makes_a_maker(clerk, supervisor, distributor):
    fund_transaction = draft(clerk, distributor)
    elsewhere = make_distributor(code="MC0002")
    fund_transaction_update(fund_transaction_id=fund_transaction.pk, actor=supervisor, distributor=elsewhere)
    fund_transactions_submit(ids=[fund_transaction.pk])

    with pytest.raises(PermissionDenied):
        fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)


def test_a_supervisor_who_only_corrected_the_remark_may_still_approve(clerk, supervisor, distributor):
    fund_transaction = draft(clerk, distributor)
    fund_transaction_update(fund_transaction_id=fund_transaction.pk, actor=supervisor, remark="补充说明")
    fund_transactions_submit(ids=[fund_transaction.pk])

    fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)

    assert prepaid(distributor) == Decimal("10.00")


def approved(clerk, supervisor, distributor, amount="500.00") -> FundTransaction:
    fund_transaction = draft(clerk, distributor, amount)
    fund_transactions_submit(ids=[fund_transaction.pk])
    return fund_transaction_approve(fund_transaction_id=fund_transaction.pk, actor=supervisor)


def test_a_reversal_draft_cannot_be_edited_into_another_transaction(client, clerk, supervisor, distributor):
    original = approved(clerk, supervisor, distributor)
    reversal = fund_transaction_reverse(fund_transaction_id=original.pk, actor=clerk)
    sign_in(client, clerk)

    page = client.post(reverse("admin:distributors_fundtransaction_change", args=[reversal.pk]),
                       change_form_data(reversal, amount="5.00", type=FundTransactionType.DEDUCTION))
    with pytest.raises(TransitionRefused):
        fund_transaction_update(fund_transaction_id=reversal.pk, actor=clerk, amount=Decimal("5.00"))

    assert page.status_code == 403
    reversal.refresh_from_db()
    assert (reversal.amount, reversal.type) == (Decimal("500.00"), FundTransactionType.RECHARGE)


def test_a_reversal_that_no_longer_mirrors_its_original_is_not_approved(clerk, supervisor, distributor):
    original = approved(clerk, supervisor, distributor)
    reversal = fund_transaction_reverse(fund_transaction_id=original.pk, actor=clerk)
    # Written behind the services' back: the approval still checks the mirror itself.
    FundTransaction.objects.filter(pk=reversal.pk).update(amount=Decimal("5000.00"))
    fund_transactions_submit(ids=[reversal.pk])

    with pytest.raises(TransitionRefused):
        fund_transaction_approve(fund_transaction_id=reversal.pk, actor=supervisor)

    assert prepaid(distributor) == Decimal("500.00")


def test_an_edit_that_lost_the_race_to_a_submission_changes_nothing(clerk, supervisor, distributor):
    fund_transaction = draft(clerk, distributor)
    stale = FundTransaction.objects.get(pk=fund_transaction.pk)  # what the change page was built from
    fund_transactions_submit(ids=[fund_transaction.pk])

    form = FundTransactionForm(change_form_data(stale, amount="99999.00"), instance=stale)
    with pytest.raises(TransitionRefused):
        fund_transaction_update(fund_transaction_id=fund_transaction.pk, actor=supervisor,
                                amount=Decimal("99999.00"))

    assert not form.is_valid() and form.non_field_errors()
    fund_transaction.refresh_from_db()
    assert fund_transaction.amount == Decimal("10.00")
    assert fund_transaction.status == FundTransactionStatus.PENDING_APPROVAL
