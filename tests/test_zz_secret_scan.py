"""Runs last (by name): no secret and no card PIN anywhere it must not be.

It searches the whole database after a full order flow, every stored provider call, and the
log output of the entire test run for the configured secrets and for every PIN the sandbox
issued during the run.
"""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection

from config.roles import FINANCE_CLERK
from orders.models import CardSecret, OrderKind, OrderStatus, Product, RechargeOrder
from orders.services import order_create, orders_place, orders_submit
from providers.models import ProviderCall
from providers.sandbox.bst17 import Bst17Sandbox
from tests.conftest import SUITE_LOG
from tests.factories import fund, make_distributor, make_user
from tests.providers import bst17_support, exchange_support

SECRET_FIELDS = {"APP_SECRET", "APP_KEY", "TRADE_PASSWORD", "PRIVATE_KEY", "MD5_KEY", "CARD_KEY"}


def configured_secrets() -> set[str]:
    found = {settings.SECRET_KEY, *settings.CARD_PIN_KEYS}
    for accounts in settings.PROVIDERS.values():
        for fields in accounts.values():
            for name, spec in fields.items():
                value = spec["value"]
                if name in SECRET_FIELDS and value:
                    found.add(value)
                    if name == "TRADE_PASSWORD":
                        found.add(hashlib.md5(value.encode()).hexdigest())
                    if name == "APP_SECRET" and ":" in value:
                        found.update(value.split(":", 1))
                    if name == "PRIVATE_KEY":  # a line from the middle of the PEM
                        lines = value.replace("\\n", "\n").strip().splitlines()
                        found.add(lines[len(lines) // 2])
    found.update(exchange_support.secrets_of_test_account())
    found.update(bst17_support.secrets_of_test_account())
    return {secret for secret in found if secret and len(secret) >= 6}


def whole_database_text() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        tables = [row[0] for row in cursor.fetchall()]
        chunks = []
        for table in tables:
            cursor.execute(f'SELECT t::text FROM "{table}" t')
            chunks.extend(row[0] for row in cursor.fetchall())
    return "\n".join(chunks)


@pytest.mark.django_db(transaction=True)
def test_no_secret_or_pin_in_the_database_the_call_log_or_the_logs(sandbox_with_callbacks):
    clerk = make_user("scan-clerk", FINANCE_CLERK)
    distributor = make_distributor()
    fund(distributor, "5000.00")
    card_product = Product.objects.create(provider="bst17", code="12", name="卡", kind=OrderKind.GIFT_CARD,
                                          sale_price=Decimal("98.00"))
    charge_product = Product.objects.create(provider="exchange", code="87103", name="会员",
                                            kind=OrderKind.DIRECT_CHARGE, sale_price=Decimal("10.00"))
    gift = order_create(distributor=distributor, product=card_product, actor=clerk, quantity=3)
    charge = order_create(distributor=distributor, product=charge_product, actor=clerk, target_account="13900000000")
    orders_place(ids=[gift.pk, charge.pk], actor=clerk)
    assert orders_submit(order_ids=[gift.pk, charge.pk])[gift.pk] == OrderStatus.SUCCEEDED
    deadline = time.monotonic() + 10
    # The callback's call-log row is written just after the order's status changes.
    while time.monotonic() < deadline and not (
        RechargeOrder.objects.get(pk=charge.pk).status == OrderStatus.SUCCEEDED
        and ProviderCall.objects.filter(direction="callback").exists()
    ):
        time.sleep(0.05)
    assert CardSecret.objects.filter(order=gift).count() == 3
    assert ProviderCall.objects.filter(direction="callback").exists()

    pins = set(Bst17Sandbox.issued_pins)
    secrets = configured_secrets()
    assert len(pins) >= 3 and len(secrets) >= 8

    database = whole_database_text()
    calls = "\n".join(
        " ".join(str(v) for v in row)
        for row in ProviderCall.objects.values_list("request_headers", "request_body", "response_body", "error", "url")
    )
    logs = SUITE_LOG.read_text(encoding="utf-8", errors="replace")
    assert "providers.base" in logs, "the run's log output was not captured"

    leaks = [
        (where, needle[:4] + "…")
        for where, text in (("database", database), ("provider calls", calls), ("log output", logs))
        for needle in secrets | pins
        if needle in text
    ]
    assert leaks == []
