"""Pushing approved fund transactions to the ERP systems (BEST GERP, Wangdiantong).

Lifecycle (docs/design.md): QUEUED -> SUBMITTING -> SUCCEEDED | FAILED | MANUAL_REVIEW. A job claims
a row with a conditional UPDATE (QUEUED -> SUBMITTING), so two workers or two clicks never both
send it. The claim commits before the request leaves; the answer is applied in a second
transaction. Neither ERP offers a query for these records, so an ambiguous outcome goes to a
person (MANUAL_REVIEW), never to a resend.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F
from django.utils.translation import gettext as _

from distributors.models import ErpSync, FundTransaction, FundTransactionType, PaymentChannel, SyncStatus
from providers.best_gerp import client as best
from providers.exceptions import Consequence, ProviderError, consequence_of
from providers.models import Provider
from providers.wdt import client as wdt

logger = logging.getLogger(__name__)

BEST_PAY_CHANNELS = {
    PaymentChannel.ALIPAY: best.PayChannel.ALIPAY,
    PaymentChannel.BANK_TRANSFER: best.PayChannel.BANK_TRANSFER,
    PaymentChannel.CASH: best.PayChannel.CASH,
    PaymentChannel.WECHAT: best.PayChannel.WECHAT_PAY,
}

WDT_PAYMENT_TYPES = {
    PaymentChannel.ALIPAY: wdt.PaymentType.ALIPAY,
    PaymentChannel.WECHAT: wdt.PaymentType.WECHAT,
    PaymentChannel.SUPPLY_CHAIN: wdt.PaymentType.SUPPLY_CHAIN,
    PaymentChannel.CMB_DIRECT: wdt.PaymentType.CMB_DIRECT,
    PaymentChannel.BILL99: wdt.PaymentType.BILL99,
    PaymentChannel.TENPAY: wdt.PaymentType.TENPAY,
    PaymentChannel.CASH: wdt.PaymentType.CASH,
    PaymentChannel.BANK_TRANSFER: wdt.PaymentType.BANK_TRANSFER,
    PaymentChannel.QUICK_PAY: wdt.PaymentType.QUICK_PAY,
    PaymentChannel.OTHER: wdt.PaymentType.OTHER,
}

WDT_TYPES = {
    FundTransactionType.RECHARGE: wdt.RechargeType.RECHARGE,
    FundTransactionType.REBATE: wdt.RechargeType.REBATE,
    FundTransactionType.DEDUCTION: wdt.RechargeType.DEDUCTION,
    FundTransactionType.CREDIT_INCREASE: wdt.RechargeType.CREDIT_INCREASE,
    FundTransactionType.CREDIT_DECREASE: wdt.RechargeType.CREDIT_DECREASE,
    # A refund pays prepaid money back: in Wangdiantong it is a deduction of the prepaid balance.
    FundTransactionType.REFUND: wdt.RechargeType.DEDUCTION,
}

# How a reversal is told to each ERP: the movement that undoes the original.
WDT_REVERSAL_TYPES = {
    wdt.RechargeType.RECHARGE: wdt.RechargeType.DEDUCTION,
    wdt.RechargeType.REBATE: wdt.RechargeType.DEDUCTION,
    wdt.RechargeType.DEDUCTION: wdt.RechargeType.RECHARGE,
    wdt.RechargeType.CREDIT_INCREASE: wdt.RechargeType.CREDIT_DECREASE,
    wdt.RechargeType.CREDIT_DECREASE: wdt.RechargeType.CREDIT_INCREASE,
}
BEST_REVERSAL_TYPES = {
    best.TransactionType.RECHARGE: best.TransactionType.REFUND,
    best.TransactionType.REFUND: best.TransactionType.RECHARGE,
}


def best_request(fund_transaction: FundTransaction) -> best.RechargeRefund:
    """The BEST GERP record for a transaction; raises InvalidRequest naming the field if it cannot be sent."""
    distributor = fund_transaction.distributor
    transaction_type = best.TransactionType[fund_transaction.type.upper()]
    if fund_transaction.reverses_id:
        transaction_type = BEST_REVERSAL_TYPES[transaction_type]
    return best.RechargeRefund(
        distributor_customer_name=distributor.best_gerp_customer_name,
        distributor_env=best.DistributorEnv(distributor.environment),
        transaction_type=transaction_type,
        total_price=fund_transaction.amount,
        pay_channel=BEST_PAY_CHANNELS.get(fund_transaction.payment_channel),
        distributor_account=fund_transaction.payer_account or distributor.best_gerp_account,
        transaction_complete_time=fund_transaction.completed_at,
        supplier_account=fund_transaction.receiving_account,
        remark=fund_transaction.remark,
    )


def wdt_request(fund_transaction: FundTransaction, voucher_no: str) -> wdt.GxRechargeOrder:
    """The Wangdiantong recharge order for a transaction; raises InvalidRequest naming the field."""
    distributor = fund_transaction.distributor
    recharge_type = WDT_TYPES[fund_transaction.type]
    if fund_transaction.reverses_id:
        recharge_type = WDT_REVERSAL_TYPES[recharge_type]
    return wdt.GxRechargeOrder(
        fx_nick_no=distributor.wdt_nick_no,
        fx_nick_name=distributor.wdt_nick_name,
        recharge_type=recharge_type,
        amount=fund_transaction.amount,
        payment_type=WDT_PAYMENT_TYPES[fund_transaction.payment_channel],
        beneficiary_account=fund_transaction.receiving_account,
        voucher_no=voucher_no,
        remark=fund_transaction.remark,
    )


def erp_sync_claim(*, erp_sync_id: int, from_statuses=(SyncStatus.QUEUED,)) -> bool:
    """QUEUED -> SUBMITTING, conditionally; True for exactly one caller however many race."""
    with transaction.atomic():
        claimed = ErpSync.objects.filter(pk=erp_sync_id, status__in=from_statuses).update(
            status=SyncStatus.SUBMITTING, attempts=F("attempts") + 1
        )
    return claimed == 1


def _finish(sync: ErpSync, status: str, *, error: str = "", upstream_reference: str = "") -> None:
    with transaction.atomic():
        ErpSync.objects.filter(pk=sync.pk, status=SyncStatus.SUBMITTING).update(
            status=status, last_error=error[:2000], upstream_reference=upstream_reference[:64]
        )


def erp_sync_submit(*, erp_sync_id: int) -> str:
    """Send one claimed sync to its ERP and record the outcome. Returns the resulting status."""
    if not erp_sync_claim(erp_sync_id=erp_sync_id):
        logger.info("ERP sync %s is not queued (already taken or finished); nothing sent", erp_sync_id)
        return ErpSync.objects.values_list("status", flat=True).get(pk=erp_sync_id)
    sync = ErpSync.objects.select_related("fund_transaction__distributor").get(pk=erp_sync_id)
    fund_transaction = sync.fund_transaction
    try:
        if sync.target == Provider.BEST_GERP:
            client = best.BestGerpClient(merchant_account=sync.merchant_account)
            result = client.recharge_refund(
                best_request(fund_transaction), record=sync, client_reference=sync.client_reference
            )
        else:
            client = wdt.WdtClient(merchant_account=sync.merchant_account)
            result = client.create_recharge_order(wdt_request(fund_transaction, sync.client_reference), record=sync)
    except ProviderError as err:
        consequence = consequence_of(err)
        if consequence is Consequence.SEND_AGAIN:
            # Nothing left the building: back in the queue, the job is retried.
            _finish(sync, SyncStatus.QUEUED, error=str(err))
            raise
        if consequence is Consequence.NOT_CARRIED_OUT:
            # FAILED may be retried by a person: only when the ERP certainly did not record it.
            _finish(sync, SyncStatus.FAILED, error=str(err))
            return SyncStatus.FAILED
        # No query API exists for these records: a person checks the ERP and decides.
        _finish(sync, SyncStatus.MANUAL_REVIEW, error=_("Outcome unknown, check the ERP: %(error)s") % {"error": err})
        return SyncStatus.MANUAL_REVIEW
    _finish(sync, SyncStatus.SUCCEEDED, upstream_reference=result.upstream_reference)
    return SyncStatus.SUCCEEDED


@transaction.atomic
def erp_sync_retry(*, erp_sync_id: int) -> bool:
    """A failed sync goes back to the queue (same client reference); True if it was failed."""
    from distributors.tasks import submit_erp_sync

    moved = ErpSync.objects.filter(pk=erp_sync_id, status=SyncStatus.FAILED).update(status=SyncStatus.QUEUED)
    if moved:
        submit_erp_sync.defer(erp_sync_id=erp_sync_id)
    return bool(moved)


@transaction.atomic
def erp_sync_resolve(*, erp_sync_id: int, actor, arrived: bool, note: str) -> bool:
    """A supervisor's decision on a sync under manual review: it arrived, or send it again."""
    from distributors.tasks import submit_erp_sync

    status = SyncStatus.SUCCEEDED if arrived else SyncStatus.QUEUED
    moved = ErpSync.objects.filter(pk=erp_sync_id, status=SyncStatus.MANUAL_REVIEW).update(
        status=status, review_note=note[:255], reviewed_by=actor
    )
    if moved and not arrived:
        submit_erp_sync.defer(erp_sync_id=erp_sync_id)
    return bool(moved)
