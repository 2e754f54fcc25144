"""What the migrations do to ERP syncs an older release left behind."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps
from pghistory.models import Events

from distributors.models import ErpSync, FundTransaction, FundTransactionType, SyncStatus
from providers.models import Provider
from tests.factories import make_distributor, make_user

pytestmark = pytest.mark.django_db

unknown_syncs = importlib.import_module("distributors.migrations.0007_erp_sync_unknown_to_manual_review")


def test_a_sync_left_unknown_goes_to_a_person_and_the_history_says_the_migration_moved_it():
    clerk = make_user("clerk")
    transaction = FundTransaction.objects.create(
        distributor=make_distributor(), type=FundTransactionType.RECHARGE, amount=Decimal("100.00"),
        voucher_no="V1", created_by=clerk,
    )
    left = ErpSync.objects.create(fund_transaction=transaction, target=Provider.BEST_GERP, client_reference="C1",
                                  status=SyncStatus.SUBMITTING, last_error="Read timed out")
    other = ErpSync.objects.create(fund_transaction=transaction, target=Provider.WDT, client_reference="C2",
                                   status=SyncStatus.FAILED)
    ErpSync.objects.filter(pk=left.pk).update(status="unknown")  # a status the model no longer offers

    unknown_syncs.unknown_to_manual_review(apps, None)

    left.refresh_from_db()
    assert left.status == SyncStatus.MANUAL_REVIEW and left.last_error == "Read timed out"
    assert ErpSync.objects.get(pk=other.pk).status == SyncStatus.FAILED
    moved = Events.objects.tracks(left).order_by("-pgh_id").first()
    assert moved.pgh_data["status"] == SyncStatus.MANUAL_REVIEW
    assert moved.pgh_context["command"] == "migrate distributors 0007"
