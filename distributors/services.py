"""Every write that moves money on a distributor's accounts goes through here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from distributors.exceptions import InsufficientFunds
from distributors.models import ZERO, Account, AccountKind, BalanceCheck, Distributor, EntryKind, LedgerEntry

CENT = Decimal("0.01")


def distributor_open_accounts(*, distributor: Distributor) -> list[Account]:
    """Make sure the distributor has one account of every kind (idempotent)."""
    existing = {a.kind: a for a in distributor.accounts.all()}
    missing = [Account(distributor=distributor, kind=kind) for kind in AccountKind.values if kind not in existing]
    if missing:
        Account.objects.bulk_create(missing, ignore_conflicts=True)
    return list(distributor.accounts.order_by("kind"))


def distributors_set_status(*, distributors: models.QuerySet[Distributor], status: str) -> int:
    """Set the status of many distributors in one UPDATE (history triggers record each row)."""
    return distributors.exclude(status=status).update(status=status, updated_at=timezone.now())


@dataclass(frozen=True)
class Posting:
    kind: AccountKind | str
    amount: Decimal


def _check_floor(accounts: dict[str, Account], postings: Iterable[Posting]) -> None:
    """Refuse postings that would leave prepaid + credit below zero, or rebate/credit below zero."""
    after = {kind: account.balance for kind, account in accounts.items()}
    for posting in postings:
        after[posting.kind] += posting.amount
    prepaid, credit, rebate = after[AccountKind.PREPAID], after[AccountKind.CREDIT], after[AccountKind.REBATE]
    for posting in postings:
        if posting.amount >= 0:
            continue
        account = accounts[posting.kind]
        if posting.kind == AccountKind.PREPAID and prepaid + credit < 0:
            available = accounts[AccountKind.PREPAID].balance + accounts[AccountKind.CREDIT].balance
            raise InsufficientFunds(account=account, amount=posting.amount, available=available)
        if posting.kind == AccountKind.CREDIT and (credit < 0 or prepaid + credit < 0):
            available = min(account.balance, accounts[AccountKind.PREPAID].balance + account.balance)
            raise InsufficientFunds(account=account, amount=posting.amount, available=max(available, ZERO))
        if posting.kind == AccountKind.REBATE and rebate < 0:
            raise InsufficientFunds(account=account, amount=posting.amount, available=account.balance)


@transaction.atomic
def ledger_post(
    *,
    distributor: Distributor,
    postings: list[Posting],
    entry_kind: EntryKind | str,
    actor=None,
    cause: models.Model | None = None,
    memo: str = "",
) -> list[LedgerEntry]:
    """Post one or more movements on a distributor's accounts, atomically.

    Locks the distributor's accounts (in a fixed order, so concurrent postings cannot deadlock),
    checks the floor, writes the entries and updates the cached balances in one transaction.
    Raises InsufficientFunds, and writes nothing, when the floor would be crossed.
    """
    if not postings:
        raise ValueError("ledger_post needs at least one posting")
    for posting in postings:
        if posting.amount != posting.amount.quantize(CENT) or posting.amount == 0:
            raise ValueError(_("A ledger amount must be non-zero with at most two decimals."))
    distributor_open_accounts(distributor=distributor)
    accounts = {a.kind: a for a in Account.objects.select_for_update().filter(distributor=distributor).order_by("kind")}
    _check_floor(accounts, postings)

    cause_type = ContentType.objects.get_for_model(cause) if cause is not None else None
    entries = []
    for posting in postings:
        account = accounts[posting.kind]
        account.balance += posting.amount
        entries.append(
            LedgerEntry(
                account=account,
                amount=posting.amount,
                balance_after=account.balance,
                kind=entry_kind,
                cause_type=cause_type,
                cause_id=str(cause.pk) if cause is not None else "",
                memo=memo,
                created_by=actor if getattr(actor, "pk", None) else None,
            )
        )
    LedgerEntry.objects.bulk_create(entries)
    for kind in {p.kind for p in postings}:
        accounts[kind].save(update_fields=["balance", "updated_at"])
    return entries


def ledger_balance_check(*, triggered_by: str) -> BalanceCheck:
    """Compare every account's cached balance with the sum of its ledger entries, in one query."""
    check = BalanceCheck.objects.create(triggered_by=triggered_by)
    rows = Account.objects.annotate(
        ledger_sum=models.functions.Coalesce(
            models.Sum("entries__amount"), models.Value(ZERO), output_field=models.DecimalField(max_digits=16, decimal_places=2)
        )
    ).values_list("pk", "distributor__code", "kind", "balance", "ledger_sum")
    mismatches, checked = [], 0
    for pk, code, kind, balance, ledger_sum in rows.iterator(chunk_size=5000):
        checked += 1
        if balance != ledger_sum:
            mismatches.append(
                {"account": pk, "distributor": code, "kind": kind, "balance": str(balance), "ledger": str(ledger_sum)}
            )
    check.accounts_checked = checked
    check.mismatches = mismatches
    check.finished_at = timezone.now()
    check.save(update_fields=["accounts_checked", "mismatches", "finished_at"])
    return check
