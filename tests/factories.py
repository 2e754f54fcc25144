"""Small builders for test data (plain functions: the suite needs no factory library)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from distributors.models import AccountKind, Distributor, EntryKind
from distributors.services import Posting, distributor_open_accounts, ledger_post

_sequence = itertools.count(1)


def make_distributor(**fields) -> Distributor:
    number = next(_sequence)
    defaults = {"code": f"T{number:05d}", "name": f"测试分销商 {number}"}
    distributor = Distributor.objects.create(**{**defaults, **fields})
    distributor_open_accounts(distributor=distributor)
    return distributor


def fund(distributor: Distributor, amount: str, kind: str = AccountKind.PREPAID, entry_kind: str = EntryKind.RECHARGE):
    return ledger_post(
        distributor=distributor, postings=[Posting(kind=kind, amount=Decimal(amount))], entry_kind=entry_kind
    )


def make_user(username: str, role: str | None = None, **fields):
    user = get_user_model().objects.create_user(username=username, password="a-long-test-password", is_staff=True, **fields)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def verify_second_factor(client, user):
    """Give `user` a confirmed TOTP device and mark the client's session verified by it.

    force_login skips the second factor; call this after it for users who need one (supervisors).
    """
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


def sign_in(client, user):
    """Sign `user` in as the login page would: with the second factor too when their permissions need one."""
    from config.security import second_factor_required

    client.force_login(user)
    if second_factor_required(user):
        verify_second_factor(client, user)
    return client
