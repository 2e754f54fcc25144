from __future__ import annotations

import logging

from django.conf import settings
from procrastinate import JobContext, RetryStrategy
from procrastinate.contrib.django import app

from config.jobs import attributed
from distributors.services import ledger_balance_check
from providers.exceptions import ProviderNotReached

logger = logging.getLogger(__name__)


def _check_and_report(triggered_by: str) -> int:
    check = ledger_balance_check(triggered_by=triggered_by)
    if check.mismatches:
        logger.error(
            "Ledger check %s: %d accounts differ from their ledgers: %s", check.pk, len(check.mismatches), check.mismatches
        )
    else:
        logger.info("Ledger check %s: %d accounts, every balance equals its ledger", check.pk, check.accounts_checked)
    return check.pk


@app.task(queue="maintenance", pass_context=True, name="distributors.verify_ledger")
@attributed
def verify_ledger(context: JobContext, triggered_by: str = "on demand") -> int:
    return _check_and_report(triggered_by)


@app.periodic(cron=settings.LEDGER_CHECK_CRON, periodic_id="verify_ledger")
@app.task(queue="maintenance", pass_context=True, name="distributors.verify_ledger_periodically")
@attributed
def verify_ledger_periodically(context: JobContext, timestamp: int) -> int:
    return _check_and_report("schedule")


# Retries happen only when nothing reached the ERP (ProviderNotReached puts the row back in the queue).
@app.task(
    queue="erp",
    pass_context=True,
    name="distributors.submit_erp_sync",
    retry=RetryStrategy(max_attempts=5, wait=30, retry_exceptions={ProviderNotReached}),
)
@attributed
def submit_erp_sync(context: JobContext, erp_sync_id: int) -> str:
    from distributors.erp_sync import erp_sync_submit

    return erp_sync_submit(erp_sync_id=erp_sync_id)
