"""The ledger: postings, the floor, append-only rows, and the balance check."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from distributors.exceptions import InsufficientFunds
from distributors.models import Account, AccountKind, EntryKind, LedgerEntry
from distributors.services import Posting, ledger_balance_check, ledger_post
from tests.factories import fund, make_distributor

pytestmark = pytest.mark.django_db


def balance(distributor, kind=AccountKind.PREPAID) -> Decimal:
    return Account.objects.get(distributor=distributor, kind=kind).balance


def test_a_posting_writes_an_entry_and_moves_the_cached_balance():
    distributor = make_distributor()

    [entry] = fund(distributor, "100.50")

    assert balance(distributor) == Decimal("100.50")
    assert entry.amount == Decimal("100.50")
    assert entry.balance_after == Decimal("100.50")
    assert entry.kind == EntryKind.RECHARGE


def test_a_debit_below_the_floor_is_refused_and_nothing_is_written():
    distributor = make_distributor()
    fund(distributor, "50.00")
    entries_before = LedgerEntry.objects.count()

    with pytest.raises(InsufficientFunds) as refused:
        fund(distributor, "-50.01", entry_kind=EntryKind.DEDUCTION)

    assert "50.00" in str(refused.value.messages[0])
    assert balance(distributor) == Decimal("50.00")
    assert LedgerEntry.objects.count() == entries_before


def test_a_credit_limit_lowers_the_prepaid_floor():
    distributor = make_distributor()
    fund(distributor, "30.00")
    fund(distributor, "70.00", kind=AccountKind.CREDIT, entry_kind=EntryKind.CREDIT_INCREASE)

    fund(distributor, "-100.00", entry_kind=EntryKind.DEDUCTION)

    assert balance(distributor) == Decimal("-70.00")
    with pytest.raises(InsufficientFunds):
        fund(distributor, "-0.01", entry_kind=EntryKind.DEDUCTION)


def test_a_credit_decrease_that_would_uncover_a_negative_prepaid_balance_is_refused():
    distributor = make_distributor()
    fund(distributor, "100.00", kind=AccountKind.CREDIT, entry_kind=EntryKind.CREDIT_INCREASE)
    fund(distributor, "-60.00", entry_kind=EntryKind.DEDUCTION)

    with pytest.raises(InsufficientFunds):
        fund(distributor, "-50.00", kind=AccountKind.CREDIT, entry_kind=EntryKind.CREDIT_DECREASE)

    assert balance(distributor, AccountKind.CREDIT) == Decimal("100.00")


def test_amounts_with_more_than_two_decimals_or_zero_are_refused():
    distributor = make_distributor()
    for amount in ("0.001", "0"):
        with pytest.raises(ValueError):
            fund(distributor, amount)
    assert LedgerEntry.objects.count() == 0


def test_the_database_refuses_to_update_a_ledger_row():
    distributor = make_distributor()
    [entry] = fund(distributor, "10.00")

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE distributors_ledgerentry SET amount = 1000 WHERE id = %s", [entry.pk])

    entry.refresh_from_db()
    assert entry.amount == Decimal("10.00")


def test_the_database_refuses_to_delete_a_ledger_row():
    distributor = make_distributor()
    [entry] = fund(distributor, "10.00")

    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()

    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_the_balance_check_reports_an_account_whose_cache_differs_from_its_ledger():
    healthy, tampered = make_distributor(), make_distributor()
    fund(healthy, "10.00")
    fund(tampered, "10.00")
    Account.objects.filter(distributor=tampered, kind=AccountKind.PREPAID).update(balance=Decimal("99.00"))

    check = ledger_balance_check(triggered_by="test")

    assert check.accounts_checked == 6
    assert check.mismatches == [
        {"account": Account.objects.get(distributor=tampered, kind="prepaid").pk, "distributor": tampered.code,
         "kind": "prepaid", "balance": "99.00", "ledger": "10.00"}
    ]
    assert not check.is_clean


@pytest.mark.django_db(transaction=True)
def test_concurrent_debits_never_take_an_account_below_its_floor():
    distributor = make_distributor()
    fund(distributor, "100.00")
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def debit():
        try:
            barrier.wait()
            ledger_post(distributor=distributor, postings=[Posting(kind="prepaid", amount=Decimal("-40.00"))],
                        entry_kind=EntryKind.DEDUCTION)
            outcomes.append("posted")
        except InsufficientFunds:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=debit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["posted", "posted", "refused", "refused"]
    assert balance(distributor) == Decimal("20.00")
    assert ledger_balance_check(triggered_by="test").mismatches == []
