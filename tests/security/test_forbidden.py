"""An auditor and a clerk try every admin URL and action they must not reach: each is refused and
nothing changes (every row of every watched table, so balances, statuses, history events, queued
jobs, users, groups, lockouts and second-factor devices)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from config.roles import AUDITOR, FINANCE_CLERK
from tests.factories import make_user, sign_in
from tests.security.conftest import WORLD_PINS, snapshot

pytestmark = pytest.mark.django_db

# The admin as registered today.
MODELS = [
    "distributors.Distributor", "distributors.Account", "distributors.LedgerEntry", "distributors.BalanceCheck",
    "distributors.FundTransaction", "distributors.ErpSync", "providers.ProviderCall", "pghistory.Events",
    "auth.User", "auth.Group", "axes.AccessAttempt", "axes.AccessLog", "axes.AccessFailureLog",
    "otp_totp.TOTPDevice", "otp_static.StaticDevice", "procrastinate.ProcrastinateJob",
    "orders.Product", "orders.RechargeOrder", "orders.OrderBatch", "orders.CardSecret", "orders.PinDisclosure",
    "orders.UpstreamBalance",
]

# What each role may do; everything else must be refused.
ALLOWED = {
    FINANCE_CLERK: {
        "distributors.Distributor": {"add", "change", "suspend", "reactivate"},
        "distributors.FundTransaction": {"add", "change draft", "submit_for_approval", "reverse"},
        # config/roles.py: orders are created and placed by clerks; products are only seen, card
        # secrets only as masked rows (no reveal, no export).
        "orders.RechargeOrder": {"add", "change draft", "place"},
        "orders.OrderBatch": {"add", "change draft", "place", "import"},
    },
    AUDITOR: {},
}


# Exports only read what the role can already view (their own tests cover them)...
READ_ACTIONS_PREFIX = "export_"
# ...except where the export discloses what the list masks: card PINs are walked like any change.
DISCLOSING_MODELS = {"orders.CardSecret"}
# Pages meaning the action went ahead: its confirmation, or its result (revealed PINs).
CONFIRMATION_PAGES = {
    "admin/confirm_action.html", "admin/delete_selected_confirmation.html", "admin/orders/cardsecret/revealed.html",
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def registered(label: str):
    return next((m, ma) for m, ma in admin.site._registry.items() if m._meta.label == label)


def objects_of(label, world, user):
    from pghistory.models import Events

    return {
        "distributors.Distributor": [world["distributor"]],
        "distributors.Account": [world["account"]],
        "distributors.LedgerEntry": [world["ledger_entry"]],
        "distributors.BalanceCheck": [world["balance_check"]],
        "distributors.FundTransaction": [world["draft"], world["pending"], world["approved"]],
        "distributors.ErpSync": [world["failed_sync"], world["review_sync"]],
        "providers.ProviderCall": [world["provider_call"]],
        "pghistory.Events": [Events.objects.order_by("pgh_created_at").first()],
        "auth.User": [user, world["supervisor"]],
        "auth.Group": [world["group"]],
        "axes.AccessAttempt": [world["access_attempt"]],
        "axes.AccessLog": [],
        "axes.AccessFailureLog": [],
        "otp_totp.TOTPDevice": [world["totp_device"]],
        "otp_static.StaticDevice": [world["static_device"]],
        "procrastinate.ProcrastinateJob": list(registered(label)[0].objects.all()[:2]),
        "orders.Product": world["products"],
        "orders.RechargeOrder": [world["draft_order"], world["queued_order"], world["review_order"],
                                 world["delivered_order"], world["draft_batch"].orders.first()],
        "orders.OrderBatch": [world["draft_batch"], world["placed_batch"]],
        "orders.CardSecret": world["cards"],
        "orders.PinDisclosure": [world["disclosure"]],
        "orders.UpstreamBalance": [world["upstream_balance"]],
    }[label]


def is_draft(obj) -> bool:
    """Still a draft: an order (or a fund transaction) by its status, a batch while none of its items is placed."""
    from orders.models import OrderBatch

    if isinstance(obj, OrderBatch):
        return not obj.orders.exclude(status="draft").exists()
    return getattr(obj, "status", None) == "draft"


def hostile_form(label, world, user) -> dict:
    """A form that would succeed if the permission check were missing."""
    every_permission = list(Permission.objects.values_list("pk", flat=True))
    return {
        "distributors.Distributor": {
            "code": "EVIL1", "name": "入侵者", "environment": "DOMESTIC", "status": "suspended",
            "best_gerp_merchant": "default", "wdt_merchant": "default",
            "accounts-TOTAL_FORMS": "0", "accounts-INITIAL_FORMS": "0",
        },
        "distributors.FundTransaction": {
            "distributor": world["distributor"].pk, "type": "recharge", "amount": "999999.00",
            "payment_channel": "bank_transfer", "payer_account": "x", "receiving_account": "y",
            "voucher_no": "EVIL-V", "completed_at_0": "2025-01-01", "completed_at_1": "10:00:00",
            "remark": "", "erp_syncs-TOTAL_FORMS": "0", "erp_syncs-INITIAL_FORMS": "0",
        },
        "auth.User": {
            "username": user.get_username(), "is_active": "on", "is_staff": "on", "is_superuser": "on",
            "groups": [world["group"].pk], "user_permissions": every_permission,
            "password1": "Correct-Horse-Battery-42", "password2": "Correct-Horse-Battery-42",
            "date_joined_0": "2025-01-01", "date_joined_1": "10:00:00",
        },
        "auth.Group": {"name": "Auditor", "permissions": every_permission},
        "orders.Product": {
            "provider": "exchange", "code": "EVIL-P", "name": "入侵商品", "kind": "direct_charge",
            "cost_price": "0.01", "sale_price": "0.01", "active": "on", "merchant_account": "default",
        },
        "orders.RechargeOrder": {
            "distributor": world["distributor"].pk, "product": world["products"][0].pk, "target_account": "EVIL",
            "mobile": "", "attach_values": "", "quantity": "1", "face_value": "",
            "card_secrets-TOTAL_FORMS": "0", "card_secrets-INITIAL_FORMS": "0",
        },
        "orders.OrderBatch": {
            "distributor": world["distributor"].pk, "product": world["products"][0].pk, "batch_code": "EVIL-B",
            "chunk_size": "100", "remark": "入侵", "orders-TOTAL_FORMS": "1", "orders-INITIAL_FORMS": "0",
            "orders-MIN_NUM_FORMS": "0", "orders-MAX_NUM_FORMS": "1000", "orders-0-target_account": "13999999999",
            "orders-0-attach_values": "", "orders-0-face_value": "",
        },
        "orders.CardSecret": {"order": world["delivered_order"].pk, "card_number": "EVIL", "expires_at": "2030-01-01"},
        "orders.UpstreamBalance": {"provider": "bst17", "merchant_account": "default", "credit": "999999",
                                   "frozen": "0", "commission": "0"},
    }.get(label, {"username": "intruder", "name": "intruder", "confirmed": "on", "failures_since_start": "0"})


def refused(response) -> bool:
    if response.status_code == 403:
        return True
    return response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def attempts(role, label, world, user):
    """(description, method, url, data, kind) for every request the role must not get through."""
    model, model_admin = registered(label)
    allowed = ALLOWED[role].get(label, set())
    info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    can_view = user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")
    form = hostile_form(label, world, user)
    objects = objects_of(label, world, user)

    if not can_view:
        yield "list", "get", reverse(f"{info}_changelist"), None, "url"
    if "add" not in allowed:
        yield "add form", "get", reverse(f"{info}_add"), None, "url"
        yield "add", "post", reverse(f"{info}_add"), form, "url"
    for obj in objects:
        if "change" not in allowed and not ("change draft" in allowed and is_draft(obj)):
            yield f"change {obj.pk}", "post", reverse(f"{info}_change", args=[obj.pk]), form, "url"
        if not can_view:
            yield f"view {obj.pk}", "get", reverse(f"{info}_change", args=[obj.pk]), None, "url"
            yield f"history {obj.pk}", "get", reverse(f"{info}_history", args=[obj.pk]), None, "url"
        yield f"delete form {obj.pk}", "get", reverse(f"{info}_delete", args=[obj.pk]), None, "url"
        yield f"delete {obj.pk}", "post", reverse(f"{info}_delete", args=[obj.pk]), {"post": "yes"}, "url"
    if label == "orders.OrderBatch" and "import" not in allowed:
        url = reverse("admin:orders_orderbatch_import")
        yield "import page", "get", url, None, "url"
        yield "import upload", "post", url, {
            "distributor": world["distributor"].pk, "product": world["products"][0].pk,
            "file": SimpleUploadedFile("evil.csv", "充值账号\n13999999999\n".encode()),
        }, "url"
        # Confirming someone's checked upload (the job page's button).
        confirm = reverse("admin:backoffice_filejob_confirm", args=[world["batch_import"].pk])
        yield "import confirm", "post", confirm, {}, "url"
    if model_admin.list_editable and "change" not in allowed:
        # The list's inline editing (product prices): without the change permission it is not offered,
        # and a forged save is either refused or ignored.
        data = {"_save": "Save", "form-TOTAL_FORMS": str(len(objects)), "form-INITIAL_FORMS": str(len(objects))}
        for index, obj in enumerate(objects):
            data |= {f"form-{index}-id": obj.pk}
            data |= {f"form-{index}-{name}": "0.01" for name in model_admin.list_editable}
        yield "list edit", "post", reverse(f"{info}_changelist"), data, "soft"
    if label == "auth.User":
        other = world["supervisor"]
        yield "set a password", "post", reverse("admin:auth_user_password_change", args=[other.pk]), {
            "password1": "Correct-Horse-Battery-42", "password2": "Correct-Horse-Battery-42",
        }, "url"
    names = [a if isinstance(a, str) else a.__name__ for a in (model_admin.actions or [])] + ["delete_selected"]
    for name in names:
        reads_only = name.startswith(READ_ACTIONS_PREFIX) and label not in DISCLOSING_MODELS
        if name in allowed or reads_only or not objects:
            continue
        first_click = {"action": name, "_selected_action": [o.pk for o in objects], "select_across": "0"}
        yield f"action (first click) {name}", "post", reverse(f"{info}_changelist"), first_click, "action"
        data = {**first_click, "confirmed": "yes", "post": "yes", "reason": "x", "note": "checked"}
        yield f"action {name}", "post", reverse(f"{info}_changelist"), data, "action"


@pytest.mark.parametrize("role", [AUDITOR, FINANCE_CLERK])
@pytest.mark.parametrize("label", MODELS)
def test_everything_out_of_the_role_is_refused_and_changes_nothing(client, world, role, label):
    user = make_user(f"intruder_{role.split()[-1].lower()}", role)
    sign_in(client, user)
    tried = 0

    for description, method, url, data, kind in attempts(role, label, world, user):
        before = snapshot()
        response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        # Whatever the answer, it never carries a card PIN, nor a spreadsheet.
        body = response.content.decode(errors="replace")
        assert not [pin for pin in WORLD_PINS if pin in body], description
        assert not response.get("Content-Type", "").startswith(XLSX), description
        if kind == "soft":
            assert response.status_code in (200, 302, 403), (description, response.status_code)
            assert not {t.name for t in response.templates} & CONFIRMATION_PAGES, description
        elif kind == "action":
            # Refused outright, or absent: the list comes back ("no action selected"), never the
            # confirmation page, and the list does not offer the action.
            assert response.status_code in (200, 302, 403), (description, response.status_code)
            rendered = {t.name for t in response.templates}
            assert not rendered & CONFIRMATION_PAGES, description
            listed = client.get(url)
            action_form = listed.context["action_form"] if listed.status_code == 200 else None
            if action_form is not None:
                offered = [name for name, _label in action_form.fields["action"].choices]
                assert description.split()[-1] not in offered, description
        else:
            assert refused(response), (description, url, response.status_code)
        assert snapshot() == before, description
        tried += 1
    assert tried > 0


@pytest.mark.parametrize("role", [AUDITOR, FINANCE_CLERK])
def test_custom_admin_pages_refuse_what_the_role_cannot_do(client, world, role):
    sign_in(client, make_user("intruder", role))
    before = snapshot()

    assert client.post(reverse("admin:distributors_balancecheck_run")).status_code == 403
    assert client.get(reverse("admin:distributors_balancecheck_run")).status_code == 403
    # Syncing products and reading our upstream balance (orders.sync_product, supervisors only).
    assert client.post(reverse("admin:orders_product_sync")).status_code == 403
    assert client.get(reverse("admin:orders_product_sync")).status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize("role", [AUDITOR, FINANCE_CLERK])
def test_only_its_uploader_confirms_an_import(client, world, role):
    """The auditor may not import at all; another clerk may import, but not confirm someone else's file."""
    from config.models import FileJob, FileJobStatus

    job = world["batch_import"]
    sign_in(client, make_user("intruder", role))
    before = snapshot()

    page = client.get(reverse("admin:backoffice_filejob_change", args=[job.pk]))
    response = client.post(reverse("admin:backoffice_filejob_confirm", args=[job.pk]))

    assert page.status_code == 200 and 'id="confirm-import"' not in page.content.decode()
    if role == AUDITOR:
        assert response.status_code == 403
    else:
        assert response.status_code == 302 and response["Location"] == reverse("admin:backoffice_filejob_change",
                                                                               args=[job.pk])
    assert FileJob.objects.get(pk=job.pk).status == FileJobStatus.READY
    assert snapshot() == before


@pytest.mark.parametrize("role", [AUDITOR, FINANCE_CLERK])
def test_nobody_without_the_permission_makes_themselves_superuser(client, world, role):
    user = make_user("climber", role)
    sign_in(client, user)
    client.post(reverse("admin:auth_user_change", args=[user.pk]), hostile_form("auth.User", world, user))

    user = get_user_model().objects.get(pk=user.pk)
    assert not user.is_superuser
    assert not user.user_permissions.exists()
    assert list(user.groups.values_list("name", flat=True)) == [role]
