"""Every admin action that moves money or shows a card PIN needs a permission of the second-factor table.

Not a list kept by hand beside the actions: every action of every registered admin is run, confirmed,
on a world with a row in each state a person acts on, and what it did is measured (ledger entries
posted, PINs decrypted). A user holding every permission except those in the table must move no
money and see no PIN; the same actions run by a verified superuser show that the world does let
each of them act.
"""

from __future__ import annotations

import pytest
from cryptography.fernet import MultiFernet
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db import transaction
from django.urls import reverse

from config.security import SECOND_FACTOR_PERMISSIONS, second_factor_required
from distributors.models import LedgerEntry
from tests.factories import make_user, sign_in
from tests.security.conftest import WORLD_PINS

pytestmark = pytest.mark.django_db

# What an action's confirmation form may ask for (a decision note, a rejection reason).
CONFIRMATION = {"confirmed": "yes", "note": "已在上游核对", "reason": "测试拒绝"}
# Deleting is refused or protected elsewhere (test_forbidden, the database); django-axes' clean-up
# of expired lockouts needs its login middleware's request attributes. Neither touches money.
NOT_RUN = {"delete_selected", "cleanup_expired_attempts"}


def every_action():
    for model, model_admin in admin.site._registry.items():
        for action in model_admin.actions or ():
            name = action if isinstance(action, str) else action.__name__
            if name not in NOT_RUN:
                yield model, name


def run_every_action(client, monkeypatch) -> dict[tuple[str, str], tuple[int, int, str]]:
    """Each action on all rows of its model: (ledger entries posted, PINs decrypted, any PIN in the answer)."""
    decrypted = []
    real_decrypt = MultiFernet.decrypt
    monkeypatch.setattr(MultiFernet, "decrypt", lambda self, token, *a: decrypted.append(1) or real_decrypt(
        self, token, *a))
    effects = {}
    for model, name in every_action():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        selected = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
        if not selected:
            continue
        entries, decrypts = LedgerEntry.objects.count(), len(decrypted)
        # Each action meets the world as it was: what one did is rolled back before the next.
        with transaction.atomic():
            response = client.post(url, {"action": name, "_selected_action": selected, **CONFIRMATION})
            posted = LedgerEntry.objects.count() - entries
            transaction.set_rollback(True)
        body = response.content.decode(errors="replace") if response.get("Content-Type", "").startswith(
            "text/") else ""
        shown = next((pin for pin in WORLD_PINS if pin in body), "")
        if response.get("Content-Type", "").startswith("application/vnd.openxml"):
            shown = "xlsx" if decrypted[decrypts:] else ""
        effects[(model._meta.label, name)] = (posted, len(decrypted) - decrypts, shown)
    return effects


def test_a_user_with_every_other_permission_moves_no_money_and_sees_no_pin(client, world, monkeypatch):
    table = [permission.split(".") for permission in SECOND_FACTOR_PERMISSIONS]
    everything_else = Permission.objects.exclude(
        pk__in=[p.pk for app, codename in table
                for p in Permission.objects.filter(content_type__app_label=app, codename=codename)])
    user = make_user("everything_else")
    user.user_permissions.set(everything_else)
    assert not second_factor_required(user)
    sign_in(client, user)

    effects = run_every_action(client, monkeypatch)

    acted = {action: effect for action, effect in effects.items() if any(effect)}
    assert acted == {}, "these actions move money or show PINs without a permission of SECOND_FACTOR_PERMISSIONS"


def test_the_world_lets_every_money_and_pin_action_act(client, world, monkeypatch):
    superuser = make_user("root", is_superuser=True)
    sign_in(client, superuser)

    effects = run_every_action(client, monkeypatch)

    posted = {action for action, (entries, _decrypts, _shown) in effects.items() if entries}
    revealed = {action for action, (_entries, decrypts, _shown) in effects.items() if decrypts}
    assert {("orders.RechargeOrder", "place"), ("orders.OrderBatch", "place"),
            ("distributors.FundTransaction", "approve"), ("orders.RechargeOrder", "resolve_failed")} <= posted
    assert {("orders.CardSecret", "reveal"), ("orders.CardSecret", "export_xlsx")} <= revealed


def test_the_table_names_only_permissions_that_exist():
    for permission in SECOND_FACTOR_PERMISSIONS:
        app_label, codename = permission.split(".")
        assert Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists(), permission
