"""Production headers: a content security policy the admin works under, no framing, HSTS."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from config.roles import FINANCE_CLERK, FINANCE_SUPERVISOR
from tests.factories import make_user, sign_in, verify_second_factor

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
JAVASCRIPT_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def admin_pages(world) -> list[str]:
    distributor, pending = world["distributor"], world["pending"]
    return [
        reverse("admin:index"),
        reverse("admin:distributors_distributor_changelist"),
        reverse("admin:distributors_distributor_add"),
        reverse("admin:distributors_distributor_change", args=[distributor.pk]),
        reverse("admin:distributors_distributor_history", args=[distributor.pk]),
        reverse("admin:distributors_distributor_statement", args=[distributor.pk]),
        reverse("admin:distributors_fundtransaction_changelist"),
        reverse("admin:distributors_fundtransaction_add"),
        reverse("admin:distributors_fundtransaction_change", args=[pending.pk]),
        reverse("admin:distributors_ledgerentry_changelist"),
        reverse("admin:distributors_balancecheck_changelist"),
        reverse("admin:distributors_erpsync_changelist"),
        reverse("admin:providers_providercall_changelist"),
        reverse("admin:pghistory_events_changelist"),
        reverse("admin:axes_accessattempt_changelist"),
        reverse("admin:password_change"),
        reverse("admin:jsi18n"),
    ]


def test_the_admin_pages_carry_a_strict_policy_and_need_no_inline_script(client, world):
    supervisor = world["supervisor"]
    sign_in(client, supervisor)
    verify_second_factor(client, supervisor)

    for url in admin_pages(world):
        response = client.get(url)
        assert response.status_code == 200, url
        directives = policy(response)
        assert directives["default-src"] == ["'self'"], url
        assert directives["script-src"] == ["'self'"], url
        assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"], url
        assert response["X-Frame-Options"] == "DENY", url
        if response["Content-Type"].startswith("text/html"):
            html = response.content.decode()
            assert not INLINE_SCRIPT.findall(html), (url, INLINE_SCRIPT.findall(html))
            assert not EVENT_HANDLER.findall(html), (url, EVENT_HANDLER.findall(html))
            assert not JAVASCRIPT_URL.findall(html), url


def test_the_actions_confirmation_and_login_pages_need_no_inline_script(client, world):
    login_page = client.get(reverse("admin:login"))
    assert "Content-Security-Policy" in login_page
    assert not INLINE_SCRIPT.findall(login_page.content.decode())

    clerk = make_user("headers_clerk", FINANCE_CLERK)
    sign_in(client, clerk)
    confirmation = client.post(
        reverse("admin:distributors_fundtransaction_changelist"),
        {"action": "submit_for_approval", "_selected_action": [world["draft"].pk]},
    )
    assert confirmation.status_code == 200
    assert "Content-Security-Policy" in confirmation
    assert not INLINE_SCRIPT.findall(confirmation.content.decode())


def test_the_second_factor_pages_work_under_the_policy(client):
    sign_in(client, make_user("headers_supervisor", FINANCE_SUPERVISOR))
    enrol = client.get(reverse("admin:second_factor_enrol"))

    assert enrol.status_code == 200
    assert policy(enrol)["script-src"] == ["'self'"]
    html = enrol.content.decode()
    assert "<svg" in html  # drawn inline: no image request, no other origin
    assert not INLINE_SCRIPT.findall(html) and not EVENT_HANDLER.findall(html)


def test_the_lockout_page_carries_the_policy(client, settings):
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(reverse("admin:login"), {"username": "nobody", "password": "wrong"})

    assert response.status_code == 429
    assert policy(response)["default-src"] == ["'self'"]


def test_production_settings_secure_the_cookies_and_the_transport():
    from tests.test_configuration import run_settings

    names = [
        "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "X_FRAME_OPTIONS",
    ]
    environment = {"DEBUG": "False", "SECRET_KEY": "k" * 50, "DATABASE_URL": "postgres://x@127.0.0.1:1/x",
                   "SECURE_SSL_REDIRECT": "True", "SESSION_COOKIE_SECURE": "True", "CSRF_COOKIE_SECURE": "True"}
    result = run_settings(f"print([getattr(settings, n) for n in {names!r}])", **environment)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[True, True, True, True, 31536000, True, 'DENY']"
