"""Fund transactions: the maker-checker flow, ledger posting on approval, and reversals.

Every function here is a service in the sense of docs/style.md (keyword-only, typed, one write each);
they live in their own module because the approval flow is the heart of the clerks' day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from distributors.models import (
    EntryKind,
    ErpSync,
    FundTransaction,
    FundTransactionStatus,
    FundTransactionType,
)
from distributors.services import Posting, ledger_post
from providers.models import Provider

# Ledger entry kind recorded for each transaction type.
ENTRY_KINDS = {
    FundTransactionType.RECHARGE: EntryKind.RECHARGE,
    FundTransactionType.REFUND: EntryKind.REFUND,
    FundTransactionType.REBATE: EntryKind.REBATE,
    FundTransactionType.DEDUCTION: EntryKind.DEDUCTION,
    FundTransactionType.CREDIT_INCREASE: EntryKind.CREDIT_INCREASE,
    FundTransactionType.CREDIT_DECREASE: EntryKind.CREDIT_DECREASE,
}

# BEST GERP knows only recharges and refunds.
BEST_GERP_TYPES = {FundTransactionType.RECHARGE, FundTransactionType.REFUND}


class TransitionRefused(ValidationError):
    """The record is not in a state that allows this step (someone else moved it first)."""


def fund_transaction_create(*, actor, **fields) -> FundTransaction:
    """Record a draft. Validation errors name the field and the reason."""
    fund_transaction = FundTransaction(created_by=actor, status=FundTransactionStatus.DRAFT, **fields)
    fund_transaction.full_clean()
    fund_transaction.save()
    return fund_transaction


# What a clerk may change on a draft; status, maker and decision fields move only through the flow.
FUND_TRANSACTION_EDITABLE_FIELDS = ("distributor", "type", "amount", "payment_channel", "payer_account",
                                    "receiving_account", "voucher_no", "completed_at", "remark")


def fund_transaction_lock_editable(fund_transaction_id: int) -> FundTransaction:
    """The draft, locked until the caller's transaction ends; refused if it is no longer editable.

    Past draft a transaction is history, and a reversal mirrors its original: neither is edited.
    """
    fund_transaction = FundTransaction.objects.select_for_update(of=("self",)).get(pk=fund_transaction_id)
    if fund_transaction.reverses_id:
        raise TransitionRefused(
            _("%(record)s reverses %(original)s and mirrors it exactly: it cannot be changed.")
            % {"record": fund_transaction, "original": f"FT{fund_transaction.reverses_id}"},
            code="reversal",
        )
    if fund_transaction.status != FundTransactionStatus.DRAFT:
        raise TransitionRefused(
            _("%(record)s is %(status)s: only a draft can be changed.")
            % {"record": fund_transaction, "status": fund_transaction.get_status_display()},
            code="not_draft",
        )
    return fund_transaction


@transaction.atomic
def fund_transaction_update(*, fund_transaction_id: int, actor, **changes) -> FundTransaction:
    """Change a draft, saved only while it is a draft. Whoever changes a money field becomes one of its
    makers, and may then neither approve nor reject it."""
    unknown = set(changes) - set(FUND_TRANSACTION_EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable on a fund transaction: {sorted(unknown)}")
    fund_transaction = fund_transaction_lock_editable(fund_transaction_id)
    changed = [name for name, value in changes.items() if getattr(fund_transaction, name) != value]
    for name in changed:
        setattr(fund_transaction, name, changes[name])
    fund_transaction.full_clean()
    if changed:
        fund_transaction.save(update_fields=changed)
    if set(changed) & set(FundTransaction.MONEY_FIELDS) and actor.pk != fund_transaction.created_by_id:
        fund_transaction.money_edited_by.add(actor)
    return fund_transaction


@dataclass
class SubmitResult:
    submitted: int
    refused: dict[int, str]  # transaction id -> why it cannot be sent to its ERP systems


def erp_readiness_errors(fund_transaction: FundTransaction) -> list[str]:
    """Why this transaction could not be sent to the ERP systems it must reach (empty when it can)."""
    from distributors.erp_sync import best_request, wdt_request
    from providers.exceptions import InvalidRequest

    errors = []
    for plan in erp_targets(fund_transaction):
        try:
            if plan.target == Provider.BEST_GERP:
                best_request(fund_transaction)
            else:
                wdt_request(fund_transaction, voucher_no=f"FT{fund_transaction.pk or 0:010d}")
        except InvalidRequest as err:
            errors.append(f"{Provider(plan.target).label}: {err}")
    return errors


def fund_transactions_submit(*, ids: Iterable[int]) -> SubmitResult:
    """Move drafts to pending approval. A draft its ERP systems would refuse stays a draft, with the reason.

    Checking now, not after approval, means a supervisor never approves money that cannot be synced.
    """
    drafts = FundTransaction.objects.filter(pk__in=list(ids), status=FundTransactionStatus.DRAFT).select_related(
        "distributor"
    )
    ready, refused = [], {}
    for fund_transaction in drafts.iterator(chunk_size=2000):
        errors = erp_readiness_errors(fund_transaction)
        if errors:
            refused[fund_transaction.pk] = "; ".join(errors)
        else:
            ready.append(fund_transaction.pk)
    submitted = 0
    for start in range(0, len(ready), 5000):
        submitted += FundTransaction.objects.filter(
            pk__in=ready[start : start + 5000], status=FundTransactionStatus.DRAFT
        ).update(status=FundTransactionStatus.PENDING_APPROVAL, submitted_at=timezone.now())
    return SubmitResult(submitted=submitted, refused=refused)


def _lock_pending(fund_transaction_id: int, actor) -> FundTransaction:
    fund_transaction = FundTransaction.objects.select_for_update().select_related("distributor").get(
        pk=fund_transaction_id
    )
    if fund_transaction.status != FundTransactionStatus.PENDING_APPROVAL:
        raise TransitionRefused(
            _("%(record)s is %(status)s, not pending approval.")
            % {"record": fund_transaction, "status": fund_transaction.get_status_display()},
            code="not_pending",
        )
    if fund_transaction.created_by_id == actor.pk:
        raise PermissionDenied(_("Nobody may approve or reject a transaction they recorded themselves."))
    if fund_transaction.money_edited_by.filter(pk=actor.pk).exists():
        raise PermissionDenied(_("Nobody may approve or reject a transaction whose amount, type, distributor or "
                                 "accounts they changed."))
    return fund_transaction


def _check_mirrors_original(reversal: FundTransaction) -> None:
    """A reversal undoes its original exactly, and only an approved original that nothing else reverses."""
    original = FundTransaction.objects.select_for_update(of=("self",)).get(pk=reversal.reverses_id)
    differing = [name for name in FundTransaction.MONEY_FIELDS
                 if getattr(original, f"{name}_id" if name == "distributor" else name)
                 != getattr(reversal, f"{name}_id" if name == "distributor" else name)]
    if differing:
        labels = ", ".join(str(FundTransaction._meta.get_field(name).verbose_name) for name in differing)
        raise TransitionRefused(
            _("%(record)s does not mirror %(original)s (%(fields)s differ): a reversal undoes exactly its original.")
            % {"record": reversal, "original": original, "fields": labels},
            code="not_a_mirror",
        )
    if original.status != FundTransactionStatus.APPROVED:
        raise TransitionRefused(_("Only an approved transaction can be reversed."), code="not_approved")


@transaction.atomic
def fund_transaction_approve(*, fund_transaction_id: int, actor) -> FundTransaction:
    """Approve: post the ledger, create the ERP syncs and queue them, all in one transaction.

    The row lock makes two supervisors approving at once give exactly one posting: the second
    waits, then finds the transaction already approved and is refused.
    """
    fund_transaction = _lock_pending(fund_transaction_id, actor)
    if fund_transaction.reverses_id:
        _check_mirrors_original(fund_transaction)
    account_kind, amount = fund_transaction.signed_posting()
    ledger_post(
        distributor=fund_transaction.distributor,
        postings=[Posting(kind=account_kind, amount=amount)],
        entry_kind=ENTRY_KINDS[fund_transaction.type],
        actor=actor,
        cause=fund_transaction,
        memo=fund_transaction.remark,
    )
    fund_transaction.status = FundTransactionStatus.APPROVED
    fund_transaction.decided_by = actor
    fund_transaction.decided_at = timezone.now()
    fund_transaction.save(update_fields=["status", "decided_by", "decided_at"])
    _create_erp_syncs(fund_transaction)
    return fund_transaction


@transaction.atomic
def fund_transaction_reject(*, fund_transaction_id: int, actor, reason: str) -> FundTransaction:
    reason = reason.strip()
    if not reason:
        raise ValidationError({"rejection_reason": _("Give a reason for the rejection.")})
    fund_transaction = _lock_pending(fund_transaction_id, actor)
    fund_transaction.status = FundTransactionStatus.REJECTED
    fund_transaction.decided_by = actor
    fund_transaction.decided_at = timezone.now()
    fund_transaction.rejection_reason = reason[:255]
    fund_transaction.save(update_fields=["status", "decided_by", "decided_at", "rejection_reason"])
    return fund_transaction


@transaction.atomic
def fund_transaction_reverse(*, fund_transaction_id: int, actor) -> FundTransaction:
    """Record a draft that undoes an approved transaction; it goes through approval like any other."""
    original = FundTransaction.objects.select_for_update().get(pk=fund_transaction_id)
    if original.status != FundTransactionStatus.APPROVED:
        raise TransitionRefused(_("Only an approved transaction can be reversed."), code="not_approved")
    if original.reverses_id:
        raise TransitionRefused(_("A reversal cannot itself be reversed; record a new transaction."))
    if FundTransaction.objects.filter(reverses=original).exists():
        raise TransitionRefused(_("%(record)s has already been reversed.") % {"record": original})
    return fund_transaction_create(
        actor=actor,
        distributor=original.distributor,
        type=original.type,
        amount=original.amount,
        payment_channel=original.payment_channel,
        payer_account=original.payer_account,
        receiving_account=original.receiving_account,
        completed_at=timezone.now(),
        remark=_("Reversal of %(record)s") % {"record": original},
        reverses=original,
    )


@dataclass(frozen=True)
class SyncPlan:
    target: str
    merchant_account: str


def erp_targets(fund_transaction: FundTransaction) -> list[SyncPlan]:
    """The ERP systems a transaction must reach: those its distributor is kept in, that take its type."""
    distributor = fund_transaction.distributor
    plans = []
    if distributor.kept_in_best_gerp and fund_transaction.type in BEST_GERP_TYPES:
        plans.append(SyncPlan(Provider.BEST_GERP, distributor.best_gerp_merchant))
    if distributor.kept_in_wdt:
        plans.append(SyncPlan(Provider.WDT, distributor.wdt_merchant))
    return plans


def _create_erp_syncs(fund_transaction: FundTransaction) -> list[ErpSync]:
    from distributors.tasks import submit_erp_sync

    syncs = []
    for plan in erp_targets(fund_transaction):
        sync = ErpSync.objects.create(
            fund_transaction=fund_transaction,
            target=plan.target,
            merchant_account=plan.merchant_account,
            # Fixed here, committed with the approval, before anything is sent.
            client_reference=f"FT{fund_transaction.pk:010d}",
        )
        submit_erp_sync.defer(erp_sync_id=sync.pk)
        syncs.append(sync)
    return syncs
