"""Hostile input through the admin: SQL and HTML in searches, filters and form fields is data,
stored and shown as typed, never run."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from config.roles import FINANCE_CLERK
from distributors.models import Distributor
from tests.factories import make_user, sign_in, verify_second_factor
from tests.security.conftest import draft, snapshot

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
PAYLOADS = [
    "' OR 1=1 --",
    "'; DROP TABLE distributors_distributor; --",
    '" OR ""="',
    "1) UNION SELECT username, password FROM auth_user --",
    SCRIPT,
    '"><img src=x onerror=alert(1)>',
    "%' AND pg_sleep(5) IS NULL --",
    "\\' OR 1=1 --",
]
SEARCHABLE = [
    "distributors_distributor", "distributors_account", "distributors_ledgerentry", "distributors_fundtransaction",
    "distributors_erpsync", "providers_providercall", "pghistory_events", "axes_accessattempt",
]
HOSTILE_NAME = '<script>alert("x")</script><img src=x onerror=alert(1)> \'; DROP TABLE auth_user; --'


@pytest.fixture
def supervisor_client(client, world):
    sign_in(client, world["supervisor"])
    verify_second_factor(client, world["supervisor"])
    return client


@pytest.mark.parametrize("changelist", SEARCHABLE)
def test_searching_with_sql_or_html_finds_nothing_changes_nothing_and_echoes_escaped(supervisor_client, world, changelist):
    url = reverse(f"admin:{changelist}_changelist")
    everything = supervisor_client.get(url).context["cl"]
    # A search matching nothing finds nothing; an admin without search ignores q and lists everything.
    expected = 0 if everything.model_admin.search_fields else everything.result_count
    for payload in PAYLOADS:
        before = snapshot()
        response = supervisor_client.get(url, {"q": payload})
        assert response.status_code == 200, (changelist, payload)
        page = response.content.decode()
        assert response.context["cl"].result_count == expected, (changelist, payload)
        assert SCRIPT not in page and "<img src=x" not in page, (changelist, payload)
        assert snapshot() == before, (changelist, payload)
    assert Distributor.objects.filter(code="SEC001").exists()


@pytest.mark.parametrize(
    "query",
    [
        {"o": "1;DROP TABLE distributors_distributor"},
        {"status__exact": "' OR 1=1 --"},
        {"code__regex": ".*"},
        {"accounts__balance__gt": "0 OR 1=1"},
        {"q": "\x00"},
        {"p": "-1 OR 1=1"},
    ],
)
def test_hostile_list_parameters_are_refused_or_ignored(supervisor_client, world, query):
    before = snapshot()

    response = supervisor_client.get(reverse("admin:distributors_distributor_changelist"), query)

    assert response.status_code in (200, 302, 400, 404)
    if response.status_code == 200:
        assert response.context["cl"].result_count <= Distributor.objects.count()
        assert SCRIPT not in response.content.decode()
    assert snapshot() == before


def test_a_hostile_distributor_name_is_stored_as_typed_and_shown_escaped_everywhere(client, world):
    clerk = make_user("typist", FINANCE_CLERK)
    sign_in(client, clerk)
    form = {
        "code": "HTML1", "name": HOSTILE_NAME, "contact_name": SCRIPT, "environment": "DOMESTIC", "status": "active",
        "best_gerp_merchant": "default", "wdt_merchant": "default",
        "accounts-TOTAL_FORMS": "0", "accounts-INITIAL_FORMS": "0",
    }

    created = client.post(reverse("admin:distributors_distributor_add"), form)

    assert created.status_code == 302
    distributor = Distributor.objects.get(code="HTML1")
    assert distributor.name == HOSTILE_NAME and distributor.contact_name == SCRIPT
    assert get_user_model().objects.exists()  # the "DROP TABLE" was only text

    fund_transaction = draft(clerk, distributor, voucher_no="HTML-V1")
    pages = {
        "list": client.get(reverse("admin:distributors_distributor_changelist")),
        "search": client.get(reverse("admin:distributors_distributor_changelist"), {"q": "script"}),
        "change": client.get(reverse("admin:distributors_distributor_change", args=[distributor.pk])),
        "history": client.get(reverse("admin:distributors_distributor_history", args=[distributor.pk])),
        "accounts": client.get(reverse("admin:distributors_account_changelist")),
        "fund transactions": client.get(reverse("admin:distributors_fundtransaction_changelist")),
        "fund transaction": client.get(reverse("admin:distributors_fundtransaction_change", args=[fund_transaction.pk])),
        "audit log": client.get(reverse("admin:pghistory_events_changelist")),
        "confirmation": client.post(
            reverse("admin:distributors_distributor_changelist"),
            {"action": "suspend", "_selected_action": [distributor.pk]},
            follow=True,
        ),
        "submit confirmation": client.post(
            reverse("admin:distributors_fundtransaction_changelist"),
            {"action": "submit_for_approval", "_selected_action": [fund_transaction.pk]},
        ),
    }

    for name, response in pages.items():
        assert response.status_code == 200, name
        page = response.content.decode()
        assert "<script>alert" not in page and "<img src=x" not in page, name
    for name in ("list", "change", "fund transactions", "confirmation"):
        assert "&lt;script&gt;alert(" in pages[name].content.decode(), name


def test_sql_in_form_fields_is_stored_as_text(client, world):
    sign_in(client, make_user("typist", FINANCE_CLERK))
    before = Distributor.objects.count()

    for number, payload in enumerate(PAYLOADS):
        response = client.post(reverse("admin:distributors_distributor_add"), {
            "code": f"SQL{number}", "name": payload, "contact_name": payload[:32], "environment": "DOMESTIC",
            "status": "active", "best_gerp_merchant": "default", "wdt_merchant": "default",
            "accounts-TOTAL_FORMS": "0", "accounts-INITIAL_FORMS": "0",
        })
        assert response.status_code == 302, (payload, response.context["adminform"].form.errors)

    stored = dict(Distributor.objects.filter(code__startswith="SQL").values_list("code", "name"))
    assert stored == {f"SQL{number}": payload for number, payload in enumerate(PAYLOADS)}
    assert Distributor.objects.count() == before + len(PAYLOADS)
