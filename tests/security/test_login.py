"""Signing in: failed logins lock the account and the address, sessions end after inactivity,
weak passwords are refused."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from config.roles import AUDITOR, FINANCE_CLERK, FINANCE_SUPERVISOR
from tests.factories import make_user, verify_second_factor
from tests.factories import sign_in as log_in_verified

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"  # tests.factories.make_user


def sign_in(client, username, password, address="203.0.113.10"):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address, headers={"accept-language": "en"},
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail_until_locked(client, username, address="203.0.113.10"):
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        response = sign_in(client, username, "wrong password", address)
    return response


def test_an_account_is_locked_after_repeated_failures_even_with_the_right_password(client):
    make_user("clerk_a", FINANCE_CLERK)

    locked = fail_until_locked(client, "clerk_a")
    right_password = sign_in(client, "clerk_a", PASSWORD)
    from_elsewhere = sign_in(client, "clerk_a", PASSWORD, address="198.51.100.7")

    assert locked.status_code == right_password.status_code == from_elsewhere.status_code == 429
    assert "Too many failed sign-ins" in right_password.content.decode()
    assert not signed_in(client)


def test_an_address_is_locked_after_failures_on_several_accounts(client):
    make_user("clerk_b", FINANCE_CLERK)
    for number in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"guess{number}", "wrong password", address="203.0.113.66")

    from_that_address = sign_in(client, "clerk_b", PASSWORD, address="203.0.113.66")
    assert from_that_address.status_code == 429
    assert not signed_in(client)

    from_another = sign_in(client, "clerk_b", PASSWORD, address="198.51.100.8")
    assert from_another.status_code == 302
    assert signed_in(client)


def test_fewer_failures_than_the_limit_do_not_lock_and_a_success_resets_them(client):
    make_user("clerk_c", FINANCE_CLERK)
    for _attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "clerk_c", "wrong password").status_code == 200

    assert sign_in(client, "clerk_c", PASSWORD).status_code == 302
    assert not AccessAttempt.objects.filter(username="clerk_c").exists()


def test_the_lock_lifts_after_the_cool_off_time(client):
    make_user("clerk_d", FINANCE_CLERK)
    fail_until_locked(client, "clerk_d")
    assert sign_in(client, "clerk_d", PASSWORD).status_code == 429

    cooled_off = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=cooled_off)

    assert sign_in(client, "clerk_d", PASSWORD).status_code == 302


def test_only_a_forwarded_address_added_by_the_trusted_proxy_counts(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("clerk_e", FINANCE_CLERK)
    for number in range(settings.AXES_FAILURE_LIMIT):
        # The attacker forges a new left-hand address each time; the proxy appends the real one.
        client.post(
            reverse("admin:login"), {"username": f"guess{number}", "password": "wrong"},
            REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"192.0.2.{number}, 203.0.113.99",
        )

    response = client.post(
        reverse("admin:login"), {"username": "clerk_e", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.200, 203.0.113.99",
    )
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.99"}


def test_a_supervisor_sees_the_lockout_and_clears_it(client):
    make_user("clerk_f", FINANCE_CLERK)
    fail_until_locked(client, "clerk_f")
    supervisor = make_user("supervisor_f", FINANCE_SUPERVISOR)
    client.force_login(supervisor)
    verify_second_factor(client, supervisor)
    attempts = reverse("admin:axes_accessattempt_changelist")

    listed = client.get(attempts, {"locked_out": "yes"})
    assert listed.status_code == 200
    assert "clerk_f" in listed.content.decode()

    attempt = AccessAttempt.objects.get(username="clerk_f")
    cleared = client.post(attempts, {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"})
    assert cleared.status_code == 302
    assert not AccessAttempt.objects.exists()

    client.logout()
    assert sign_in(client, "clerk_f", PASSWORD).status_code == 302


@pytest.mark.parametrize("role", [FINANCE_CLERK, AUDITOR])
def test_clerks_and_auditors_can_neither_see_nor_clear_lockouts(client, role):
    fail_until_locked(client, "victim")
    log_in_verified(client, make_user("user_g", role))
    attempt = AccessAttempt.objects.get(username="victim")

    assert client.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403
    assert client.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"}).status_code == 403
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()


def test_a_session_ends_after_the_inactivity_timeout_not_while_in_use(client):
    log_in_verified(client, make_user("clerk_h", FINANCE_CLERK))
    index = reverse("admin:index")
    idle = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    start = timezone.now()

    def at(moment):
        with mock.patch("django.utils.timezone.now", return_value=moment):
            return client.get(index)

    assert at(start + idle * 2 / 3).status_code == 200  # each request pushes the expiry on
    assert at(start + idle * 4 / 3).status_code == 200  # past the first expiry, but active
    expired = at(start + idle * 4 / 3 + idle + timedelta(seconds=1))
    assert expired.status_code == 302
    assert expired["Location"].startswith(reverse("admin:login"))


def test_the_session_cookie_is_secure_http_only_and_ends_with_the_browser(client, settings):
    settings.SESSION_COOKIE_SECURE = True
    make_user("clerk_i", FINANCE_CLERK)

    response = sign_in(client, "clerk_i", PASSWORD)

    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["secure"] and cookie["httponly"]
    assert not cookie["max-age"] and not cookie["expires"]


@pytest.mark.parametrize("weak", ["short1", "password123", "1234567890123", "clerk_j_clerk"])
def test_the_admin_refuses_a_weak_new_password(client, weak):
    user = make_user("clerk_j_clerk", FINANCE_CLERK)
    log_in_verified(client, user)

    response = client.post(
        reverse("admin:password_change"),
        {"old_password": PASSWORD, "new_password1": weak, "new_password2": weak},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["new_password2"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_the_admin_accepts_a_strong_new_password(client):
    user = make_user("clerk_k", FINANCE_CLERK)
    log_in_verified(client, user)

    response = client.post(
        reverse("admin:password_change"),
        {"old_password": PASSWORD, "new_password1": "Tea-kettle-lantern-93", "new_password2": "Tea-kettle-lantern-93"},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("Tea-kettle-lantern-93")
