"""What each role can and cannot do."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from config.roles import AUDITOR, FINANCE_CLERK, FINANCE_SUPERVISOR
from distributors.models import Distributor, LedgerEntry
from tests.factories import fund, make_distributor, make_user, sign_in, verify_second_factor

pytestmark = pytest.mark.django_db


@pytest.fixture
def distributor():
    distributor = make_distributor()
    fund(distributor, "100.00")
    return distributor


def login(client, role):
    user = make_user(role.lower().replace(" ", "_"), role)
    sign_in(client, user)
    return user


def new_distributor_form(code):
    return {
        "code": code, "name": "新分销商", "environment": "DOMESTIC", "status": "active",
        "best_gerp_merchant": "default", "wdt_merchant": "default",
        "accounts-TOTAL_FORMS": "0", "accounts-INITIAL_FORMS": "0",
    }


def test_the_three_roles_exist_as_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {FINANCE_CLERK, FINANCE_SUPERVISOR, AUDITOR}


def test_a_clerk_manages_distributors_but_cannot_touch_the_ledger_or_run_the_check(client, distributor):
    login(client, FINANCE_CLERK)

    created = client.post(reverse("admin:distributors_distributor_add"), new_distributor_form("NEW1"))
    assert created.status_code == 302
    assert Distributor.objects.get(code="NEW1").accounts.count() == 3

    entry = LedgerEntry.objects.first()
    assert client.get(reverse("admin:distributors_ledgerentry_changelist")).status_code == 200
    assert client.post(reverse("admin:distributors_ledgerentry_delete", args=[entry.pk])).status_code == 403
    assert client.post(reverse("admin:distributors_balancecheck_run")).status_code == 403


def test_a_supervisor_can_run_the_ledger_check(client, distributor):
    verify_second_factor(client, login(client, FINANCE_SUPERVISOR))

    response = client.post(reverse("admin:distributors_balancecheck_run"))

    assert response.status_code == 302
    from procrastinate.contrib.django.models import ProcrastinateJob

    assert ProcrastinateJob.objects.filter(task_name="distributors.verify_ledger").exists()


def test_an_auditor_reads_everything_and_changes_nothing(client, distributor):
    login(client, AUDITOR)

    for name in ["distributors_distributor", "distributors_account", "distributors_ledgerentry",
                 "providers_providercall", "pghistory_events"]:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    assert client.get(reverse("admin:distributors_distributor_change", args=[distributor.pk])).status_code == 200

    assert client.post(reverse("admin:distributors_distributor_add"), new_distributor_form("NEW2")).status_code == 403
    changed = client.post(
        reverse("admin:distributors_distributor_changelist"),
        {"action": "suspend", "_selected_action": [distributor.pk]},
    )
    distributor.refresh_from_db()
    assert distributor.status == "active"
    assert changed.status_code in (200, 302, 403)
    assert client.post(reverse("admin:distributors_balancecheck_run")).status_code == 403
    assert not Distributor.objects.filter(code="NEW2").exists()


def test_nobody_without_a_role_gets_into_the_back_office(client, distributor):
    user = make_user("nobody")
    sign_in(client, user)
    assert client.get(reverse("admin:distributors_distributor_changelist")).status_code == 403
