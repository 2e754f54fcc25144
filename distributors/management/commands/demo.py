"""Create demo data and one login per role; safe to run again (it changes nothing the second time)."""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from config.history import command_context
from config.roles import AUDITOR, FINANCE_CLERK, FINANCE_SUPERVISOR
from distributors.models import AccountKind, Distributor, EntryKind
from distributors.services import Posting, distributor_open_accounts, ledger_post

DEMO_USERS = [("clerk", FINANCE_CLERK), ("supervisor", FINANCE_SUPERVISOR), ("auditor", AUDITOR)]

DEMO_DISTRIBUTORS = [
    {
        "code": "D1001", "name": "华东优选商贸", "environment": "DOMESTIC", "contact_name": "王芳",
        "contact_phone": "13800000001", "best_gerp_customer_name": "华东优选商贸", "kept_in_best_gerp": True,
        "wdt_nick_no": "FX1001", "wdt_nick_name": "华东优选", "kept_in_wdt": True,
    },
    {
        "code": "D1002", "name": "深圳星河数码", "environment": "DOMESTIC", "contact_name": "李强",
        "contact_phone": "13800000002", "wdt_nick_no": "FX1002", "wdt_nick_name": "星河数码", "kept_in_wdt": True,
    },
    {
        "code": "D2001", "name": "HK Bright Trading", "environment": "CROSSBORDER", "contact_name": "Chan",
        "contact_phone": "85290000001", "best_gerp_customer_name": "HK Bright Trading", "kept_in_best_gerp": True,
    },
]

DEMO_POSTINGS = {
    "D1001": [(AccountKind.PREPAID, EntryKind.RECHARGE, "50000.00"), (AccountKind.CREDIT, EntryKind.CREDIT_INCREASE, "10000.00"),
              (AccountKind.PREPAID, EntryKind.DEDUCTION, "-1250.50"), (AccountKind.REBATE, EntryKind.REBATE, "320.00")],
    "D1002": [(AccountKind.PREPAID, EntryKind.RECHARGE, "8800.00"), (AccountKind.PREPAID, EntryKind.REFUND, "-800.00")],
    "D2001": [(AccountKind.PREPAID, EntryKind.RECHARGE, "12000.00")],
}


class Command(BaseCommand):
    help = _("Create demo distributors with ledger history, and one login per role.")

    def handle(self, *args, **options):
        with command_context("demo"), transaction.atomic():
            self._distributors()
            password = self._users()
        self.stdout.write(_("Demo logins (password for all): %(password)s") % {"password": password})
        for username, role in DEMO_USERS:
            self.stdout.write(f"  {username:<11} {role}")
        self.stdout.write(
            _("On first login the clerk and the supervisor (they move money) enrol a second factor (an "
              "authenticator app) at %(url)s")
            % {"url": f"http://127.0.0.1:8000{reverse('admin:second_factor_enrol')}"}
        )

    def _distributors(self) -> None:
        for fields in DEMO_DISTRIBUTORS:
            distributor, created = Distributor.objects.get_or_create(code=fields["code"], defaults=fields)
            distributor_open_accounts(distributor=distributor)
            if not created:
                continue
            for kind, entry_kind, amount in DEMO_POSTINGS[distributor.code]:
                ledger_post(
                    distributor=distributor,
                    postings=[Posting(kind=kind, amount=Decimal(amount))],
                    entry_kind=entry_kind,
                    memo=_("Demo data"),
                )

    def _users(self) -> str:
        """One password for the demo logins, generated once and kept under var/ (never in the repo)."""
        password_file = Path(settings.VAR_DIR) / "demo-password"
        if password_file.exists():
            password = password_file.read_text().strip()
        else:
            password = f"demo-{secrets.token_urlsafe(9)}"
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password)
            password_file.chmod(0o600)
        User = get_user_model()
        for username, role in DEMO_USERS:
            user, _created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            user.is_staff = True
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
        return password
