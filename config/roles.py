"""The three roles of the back office, as Django groups, and what each may do.

Data migrations call `sync_roles(apps)` so groups always match this table; a later feature that
adds permissions adds a migration calling it again.
"""

from __future__ import annotations

FINANCE_CLERK = "Finance clerk"
FINANCE_SUPERVISOR = "Finance supervisor"
AUDITOR = "Auditor"

# Every business model, by app label: what "read-only everywhere" covers.
BUSINESS_MODELS = {
    "distributors": ["distributor", "account", "ledgerentry", "balancecheck", "fundtransaction", "erpsync"],
    "providers": ["providercall"],
    "orders": ["product", "rechargeorder", "orderbatch", "cardsecret", "pindisclosure", "upstreambalance"],
    "pghistory": ["events", "context"],
}


def _view_all() -> set[tuple[str, str]]:
    return {(app, f"view_{model}") for app, models in BUSINESS_MODELS.items() for model in models}


CLERK_PERMISSIONS = _view_all() | {
    ("distributors", "add_distributor"),
    ("distributors", "change_distributor"),
    ("distributors", "export_statement"),
    ("distributors", "add_fundtransaction"),
    ("distributors", "change_fundtransaction"),
    ("distributors", "submit_fundtransaction"),
    ("distributors", "reverse_fundtransaction"),
    ("orders", "add_rechargeorder"),
    ("orders", "change_rechargeorder"),
    ("orders", "place_rechargeorder"),
    ("orders", "add_orderbatch"),
    ("orders", "change_orderbatch"),
}

SUPERVISOR_PERMISSIONS = CLERK_PERMISSIONS | {
    ("distributors", "run_ledger_check"),
    ("distributors", "approve_fundtransaction"),
    ("distributors", "retry_erpsync"),
    ("distributors", "resolve_erpsync"),
    ("orders", "add_product"),
    ("orders", "change_product"),
    ("orders", "sync_product"),
    ("orders", "resolve_rechargeorder"),
    ("orders", "reveal_cardsecret"),
    ("orders", "export_cardsecret"),
    # Login lockouts (django-axes): see who is locked out, and clear it by deleting the attempts.
    ("axes", "view_accessattempt"),
    ("axes", "delete_accessattempt"),
    # Every import and export, anyone's: who moved which file, when, and how it ended.
    ("backoffice", "view_filejob"),
}

AUDITOR_PERMISSIONS = _view_all() | {
    ("distributors", "export_statement"),
    ("backoffice", "view_filejob"),
}

ROLE_PERMISSIONS = {
    FINANCE_CLERK: CLERK_PERMISSIONS,
    FINANCE_SUPERVISOR: SUPERVISOR_PERMISSIONS,
    AUDITOR: AUDITOR_PERMISSIONS,
}


def sync_roles(apps, schema_editor=None) -> None:
    """Create the groups and give each exactly the permissions of its role."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; make sure they exist now.
    for app_config in apps.get_app_configs():
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, wanted in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = [
            permission
            for app_label, codename in sorted(wanted)
            for permission in Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        ]
        group.permissions.set(permissions)
