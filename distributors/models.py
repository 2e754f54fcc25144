"""Distributors, their funds accounts and the append-only ledger that moves their balances."""

from __future__ import annotations

from decimal import Decimal

import pghistory
import pgtrigger
from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy as _

MONEY = {"max_digits": 16, "decimal_places": 2}
ZERO = Decimal("0.00")


class Environment(models.TextChoices):
    DOMESTIC = "DOMESTIC", _("Domestic")
    CROSSBORDER = "CROSSBORDER", _("Cross-border")


class DistributorStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")
    CLOSED = "closed", _("Closed")


@pghistory.track()
class Distributor(models.Model):
    code = models.CharField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    environment = models.CharField(
        _("environment"), max_length=16, choices=Environment.choices, default=Environment.DOMESTIC
    )
    status = models.CharField(
        _("status"), max_length=16, choices=DistributorStatus.choices, default=DistributorStatus.ACTIVE
    )
    contact_name = models.CharField(_("contact name"), max_length=50, blank=True)
    contact_phone = models.CharField(_("contact phone"), max_length=32, blank=True)
    contact_email = models.EmailField(_("contact email"), blank=True)
    best_gerp_customer_name = models.CharField(
        _("BEST GERP customer name"),
        max_length=100,
        blank=True,
        help_text=_("distributorCustomerName in BEST GERP."),
    )
    best_gerp_account = models.CharField(_("BEST GERP distributor account"), max_length=100, blank=True)
    wdt_nick_no = models.CharField(
        _("Wangdiantong distributor number"), max_length=32, blank=True, help_text=_("fx_nick_no in Wangdiantong.")
    )
    wdt_nick_name = models.CharField(
        _("Wangdiantong distributor name"), max_length=50, blank=True, help_text=_("fx_nick_name in Wangdiantong.")
    )
    kept_in_best_gerp = models.BooleanField(_("kept in BEST GERP"), default=False)
    kept_in_wdt = models.BooleanField(_("kept in Wangdiantong"), default=False)
    best_gerp_merchant = models.CharField(
        _("BEST GERP merchant account"),
        max_length=32,
        default="default",
        help_text=_("Which of our BEST GERP apps this distributor is kept under."),
    )
    wdt_merchant = models.CharField(_("Wangdiantong merchant account"), max_length=32, default="default")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("distributor")
        verbose_name_plural = _("distributors")
        ordering = ["code"]
        permissions = [("export_statement", _("Can export a distributor statement"))]
        indexes = [models.Index(fields=["name"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class AccountKind(models.TextChoices):
    PREPAID = "prepaid", _("Prepaid")
    REBATE = "rebate", _("Rebate")
    CREDIT = "credit", _("Credit limit")


@pghistory.track()
class Account(models.Model):
    """One funds account per distributor and kind. `balance` is a cache of the ledger's sum.

    For the credit kind the balance is the credit limit granted; it widens the prepaid floor.
    """

    distributor = models.ForeignKey(
        Distributor, on_delete=models.PROTECT, related_name="accounts", verbose_name=_("distributor")
    )
    kind = models.CharField(_("kind"), max_length=16, choices=AccountKind.choices)
    currency = models.CharField(_("currency"), max_length=3, default="CNY", editable=False)
    balance = models.DecimalField(_("balance"), default=ZERO, editable=False, **MONEY)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("funds account")
        verbose_name_plural = _("funds accounts")
        ordering = ["distributor__code", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["distributor", "kind"], name="account_one_per_distributor_and_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.distributor.code} {self.get_kind_display()}"


class EntryKind(models.TextChoices):
    RECHARGE = "recharge", _("Recharge")
    REFUND = "refund", _("Refund")
    REBATE = "rebate", _("Rebate")
    DEDUCTION = "deduction", _("Deduction")
    CREDIT_INCREASE = "credit_increase", _("Credit increase")
    CREDIT_DECREASE = "credit_decrease", _("Credit decrease")
    ORDER_HOLD = "order_hold", _("Order payment held")
    ORDER_RELEASE = "order_release", _("Order payment released")
    OPENING = "opening", _("Opening balance")


@pghistory.track(pghistory.InsertEvent())  # immutable rows: the insert event carries who and from where
class LedgerEntry(models.Model):
    """An append-only movement of one account. UPDATE and DELETE are refused by a trigger."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries", verbose_name=_("account"))
    amount = models.DecimalField(_("amount"), **MONEY, help_text=_("Positive credits the account, negative debits it."))
    balance_after = models.DecimalField(_("balance after"), **MONEY)
    kind = models.CharField(_("kind"), max_length=24, choices=EntryKind.choices)
    cause_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, null=True, blank=True, verbose_name=_("cause type")
    )
    cause_id = models.CharField(_("cause id"), max_length=64, blank=True)
    cause = GenericForeignKey("cause_type", "cause_id")
    memo = models.CharField(_("memo"), max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["account", "id"]),
            models.Index(fields=["cause_type", "cause_id"]),
        ]
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_entry_amount_not_zero")]
        triggers = [
            pgtrigger.Protect(name="ledger_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.account} {self.amount}"


class BalanceCheck(models.Model):
    """One run of the ledger check: does every cached balance equal the sum of its entries?"""

    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    accounts_checked = models.PositiveIntegerField(_("accounts checked"), default=0)
    mismatches = models.JSONField(_("mismatches"), default=list, blank=True)
    triggered_by = models.CharField(_("triggered by"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("ledger check")
        verbose_name_plural = _("ledger checks")
        permissions = [("run_ledger_check", _("Can run the ledger check on demand"))]
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M}"

    @property
    def is_clean(self) -> bool:
        return self.finished_at is not None and not self.mismatches
