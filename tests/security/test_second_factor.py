"""Users who can move money or see card PINs sign in with a TOTP second factor; others do not."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from config.roles import AUDITOR, FINANCE_CLERK, FINANCE_SUPERVISOR
from config.security import second_factor_required
from distributors.models import FundTransactionStatus
from tests.factories import make_user
from tests.security.conftest import snapshot

pytestmark = pytest.mark.django_db

ENROL = reverse("admin:second_factor_enrol")
VERIFY = reverse("admin:second_factor_verify")
FUND_TRANSACTIONS = reverse("admin:distributors_fundtransaction_changelist")


def code(device: TOTPDevice, at: float | None = None) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    if at is not None:
        totp.time = at
    return f"{totp.token():0{device.digits}d}"


def approve(client, fund_transaction):
    selection = {"action": "approve", "_selected_action": [fund_transaction.pk]}
    client.post(FUND_TRANSACTIONS, selection)
    return client.post(FUND_TRANSACTIONS, {**selection, "confirmed": "yes"})


def test_a_supervisor_without_a_device_is_sent_to_enrolment_and_cannot_approve(client, world):
    supervisor = make_user("new_supervisor", FINANCE_SUPERVISOR)
    client.force_login(supervisor)
    before = snapshot()

    index = client.get(reverse("admin:index"))
    approving = approve(client, world["pending"])

    assert index.status_code == 302
    assert index["Location"].startswith(ENROL + "?next=")
    assert approving.status_code == 302 and approving["Location"].startswith(ENROL)
    assert snapshot() == before
    world["pending"].refresh_from_db()
    assert world["pending"].status == FundTransactionStatus.PENDING_APPROVAL


def test_enrolment_shows_a_qr_code_and_the_first_code_confirms_it(client, world):
    supervisor = make_user("new_supervisor", FINANCE_SUPERVISOR)
    client.force_login(supervisor)

    page = client.get(ENROL, {"next": FUND_TRANSACTIONS})
    html = page.content.decode()
    device = TOTPDevice.objects.get(user=supervisor)
    assert page.status_code == 200
    assert re.search(r'<div id="second-factor-qr-code"><svg[^>]*>.*</svg></div>', html, re.S)
    assert "otpauth://totp/" in html and "new_supervisor" in html
    assert not device.confirmed

    wrong = client.post(ENROL, {"token": "000000" if code(device) != "000000" else "111111"})
    assert wrong.status_code == 200 and wrong.context["form"].errors
    assert client.get(reverse("admin:index")).status_code == 302

    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    enrolled = client.post(ENROL, {"token": code(device), "next": FUND_TRANSACTIONS})
    assert enrolled.status_code == 200
    assert len(enrolled.context["backup_codes"]) == 10
    assert enrolled.context["next"] == FUND_TRANSACTIONS
    device.refresh_from_db()
    assert device.confirmed

    assert client.get(reverse("admin:index")).status_code == 200
    approve(client, world["pending"])
    world["pending"].refresh_from_db()
    assert world["pending"].status == FundTransactionStatus.APPROVED


def test_a_supervisor_with_a_device_gives_a_code_at_each_sign_in(client, world):
    supervisor = make_user("returning_supervisor", FINANCE_SUPERVISOR)
    device = TOTPDevice.objects.create(user=supervisor, name="phone", confirmed=True)

    signed_in = client.post(
        reverse("admin:login"),
        {"username": "returning_supervisor", "password": "a-long-test-password", "next": FUND_TRANSACTIONS},
    )
    assert signed_in.status_code == 302
    asked = client.get(signed_in["Location"])
    assert asked.status_code == 302 and asked["Location"].startswith(VERIFY)

    # A password alone does not let anyone add their own device instead.
    assert client.get(ENROL)["Location"].startswith(VERIFY)
    assert TOTPDevice.objects.filter(user=supervisor).count() == 1

    before = snapshot()
    assert approve(client, world["pending"])["Location"].startswith(VERIFY)
    assert client.post(VERIFY, {"token": "12345"}).context["form"].errors
    after = snapshot()
    before.pop("otp_totp.TOTPDevice"), after.pop("otp_totp.TOTPDevice")  # a wrong code moves the throttle
    assert after == before

    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    verified = client.post(f"{VERIFY}?next={FUND_TRANSACTIONS}", {"token": code(device)})
    assert verified.status_code == 302 and verified["Location"] == FUND_TRANSACTIONS

    approve(client, world["pending"])
    world["pending"].refresh_from_db()
    assert world["pending"].status == FundTransactionStatus.APPROVED


def test_a_backup_code_works_once(client, world):
    supervisor = make_user("phone_lost", FINANCE_SUPERVISOR)
    client.force_login(supervisor)
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=supervisor)
    backup = client.post(ENROL, {"token": code(device)}).context["backup_codes"][0]

    client.logout()
    for attempt in range(2):
        client.force_login(supervisor)
        response = client.post(VERIFY, {"token": backup})
        if attempt == 0:
            assert response.status_code == 302
            assert client.get(reverse("admin:index")).status_code == 200
        else:
            assert response.status_code == 200 and response.context["form"].errors
            assert client.get(reverse("admin:index")).status_code == 302
        client.logout()
    assert not StaticToken.objects.filter(token=backup).exists()


def test_the_token_prompt_does_not_redirect_off_site(client):
    supervisor = make_user("redirected", FINANCE_SUPERVISOR)
    device = TOTPDevice.objects.create(user=supervisor, name="phone", confirmed=True)
    client.force_login(supervisor)

    response = client.post(f"{VERIFY}?next=https://evil.example/", {"token": code(device)})

    assert response["Location"] == reverse("admin:index")


def test_an_unverified_supervisor_can_still_log_out(client):
    client.force_login(make_user("leaving", FINANCE_SUPERVISOR))

    response = client.post(reverse("admin:logout"))

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_auditors_are_not_asked_for_a_second_factor(client):
    client.force_login(make_user("plain", AUDITOR))

    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(FUND_TRANSACTIONS).status_code == 200


def test_clerks_place_orders_so_they_need_the_second_factor(client):
    client.force_login(make_user("placer", FINANCE_CLERK))

    assert client.get(reverse("admin:orders_rechargeorder_changelist"))["Location"].startswith(ENROL)


def test_anyone_who_can_resolve_manual_reviews_needs_the_second_factor(client):
    user = make_user("reviewer")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="distributors", codename="resolve_erpsync"),
        Permission.objects.get(content_type__app_label="distributors", codename="view_erpsync"),
    )
    client.force_login(user)

    assert client.get(reverse("admin:distributors_erpsync_changelist"))["Location"].startswith(ENROL)


def test_superusers_need_the_second_factor(client):
    client.force_login(make_user("root", is_superuser=True))

    assert client.get(reverse("admin:auth_user_changelist"))["Location"].startswith(ENROL)


@pytest.mark.parametrize(
    "permission, required",
    [
        ("distributors.approve_fundtransaction", True),
        ("distributors.resolve_erpsync", True),
        ("orders.reveal_cardsecret", True),
        ("orders.export_cardsecret", True),
        ("orders.place_rechargeorder", True),  # placing holds the order's price
        ("orders.resolve_rechargeorder", True),  # deciding keeps or releases it
        ("distributors.retry_erpsync", True),
        ("distributors.submit_fundtransaction", False),
        ("distributors.export_statement", False),
    ],
)
def test_which_permissions_require_the_second_factor(permission, required):
    user = SimpleNamespace(is_active=True, has_perm=lambda name: name == permission)

    assert second_factor_required(user) is required


def test_a_code_from_another_time_window_is_refused(client):
    supervisor = make_user("late", FINANCE_SUPERVISOR)
    device = TOTPDevice.objects.create(user=supervisor, name="phone", confirmed=True)
    client.force_login(supervisor)

    stale = code(device, at=time.time() - 10 * device.step)
    with mock.patch.object(TOTPDevice, "get_throttle_factor", return_value=0):
        response = client.post(VERIFY, {"token": stale})

    assert response.status_code == 200 and response.context["form"].errors


def test_the_demo_tells_the_supervisor_where_to_enrol(settings, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    settings.VAR_DIR = tmp_path
    output = StringIO()

    call_command("demo", stdout=output)

    lines = output.getvalue().splitlines()
    assert lines[1].split() == ["clerk", FINANCE_CLERK.split()[0], FINANCE_CLERK.split()[1]]
    assert f"http://127.0.0.1:8000{ENROL}" in lines[-1]
