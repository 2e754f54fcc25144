"""Distributors, their funds accounts and the append-only ledger that moves their balances."""

from __future__ import annotations

from decimal import Decimal

import pghistory
import pgtrigger
from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from providers.models import ERP_PROVIDERS, Provider

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


class FundTransactionType(models.TextChoices):
    RECHARGE = "recharge", _("Recharge")
    REFUND = "refund", _("Refund")
    REBATE = "rebate", _("Rebate")
    DEDUCTION = "deduction", _("Deduction")
    CREDIT_INCREASE = "credit_increase", _("Credit increase")
    CREDIT_DECREASE = "credit_decrease", _("Credit decrease")


# Which account a transaction type moves, and in which direction, when it is approved.
FUND_TRANSACTION_POSTINGS: dict[str, tuple[str, int]] = {
    FundTransactionType.RECHARGE: (AccountKind.PREPAID, +1),
    FundTransactionType.REFUND: (AccountKind.PREPAID, -1),
    FundTransactionType.REBATE: (AccountKind.REBATE, +1),
    FundTransactionType.DEDUCTION: (AccountKind.PREPAID, -1),
    FundTransactionType.CREDIT_INCREASE: (AccountKind.CREDIT, +1),
    FundTransactionType.CREDIT_DECREASE: (AccountKind.CREDIT, -1),
}


class PaymentChannel(models.TextChoices):
    ALIPAY = "alipay", _("Alipay")
    WECHAT = "wechat", _("WeChat Pay")
    BANK_TRANSFER = "bank_transfer", _("Bank transfer")
    CASH = "cash", _("Cash")
    SUPPLY_CHAIN = "supply_chain", _("Supply-chain payment")
    CMB_DIRECT = "cmb_direct", _("China Merchants Bank direct")
    BILL99 = "bill99", _("99Bill")
    TENPAY = "tenpay", _("Tenpay")
    QUICK_PAY = "quick_pay", _("Quick pay")
    OTHER = "other", _("Other")


class FundTransactionStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    PENDING_APPROVAL = "pending_approval", _("Pending approval")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


@pghistory.track()
class FundTransaction(models.Model):
    """Money a distributor paid in or out, recorded by a clerk and approved by a supervisor."""

    distributor = models.ForeignKey(
        Distributor, on_delete=models.PROTECT, related_name="fund_transactions", verbose_name=_("distributor")
    )
    type = models.CharField(_("type"), max_length=24, choices=FundTransactionType.choices)
    amount = models.DecimalField(_("amount"), **MONEY)
    payment_channel = models.CharField(
        _("payment channel"), max_length=24, choices=PaymentChannel.choices, default=PaymentChannel.BANK_TRANSFER
    )
    payer_account = models.CharField(_("payer account"), max_length=128, blank=True)
    receiving_account = models.CharField(_("receiving account"), max_length=128, blank=True)
    voucher_no = models.CharField(_("voucher number"), max_length=64, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    remark = models.CharField(_("remark"), max_length=255, blank=True)
    external_reference = models.CharField(
        _("external reference"),
        max_length=64,
        blank=True,
        help_text=_("Identifies the row in an imported file, so importing it again creates nothing."),
    )
    status = models.CharField(
        _("status"), max_length=24, choices=FundTransactionStatus.choices, default=FundTransactionStatus.DRAFT
    )
    reverses = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reversed_by",
        verbose_name=_("reverses"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("created by")
    )
    # Maker-checker: whoever set a money field (MONEY_FIELDS) is a maker of the transaction, and no
    # maker may approve it. The creator is one; these are the others, added by every edit.
    money_edited_by = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="+", blank=True, editable=False,
        verbose_name=_("money fields changed by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("approved or rejected by"),
    )
    decided_at = models.DateTimeField(_("approved or rejected at"), null=True, blank=True)
    rejection_reason = models.CharField(_("rejection reason"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("fund transaction")
        verbose_name_plural = _("fund transactions")
        ordering = ["-id"]
        permissions = [
            ("submit_fundtransaction", _("Can submit fund transactions for approval")),
            ("approve_fundtransaction", _("Can approve or reject fund transactions")),
            ("reverse_fundtransaction", _("Can record a reversing transaction")),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="fund_transaction_amount_positive"),
            models.UniqueConstraint(
                fields=["voucher_no"],
                condition=~models.Q(voucher_no=""),
                name="fund_transaction_voucher_unique",
                violation_error_message=_("This voucher number is already recorded."),
            ),
            models.UniqueConstraint(
                fields=["external_reference"],
                condition=~models.Q(external_reference=""),
                name="fund_transaction_external_reference_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-id"]),
            models.Index(fields=["distributor", "-id"]),
            models.Index(fields=["type", "-id"]),
            models.Index(fields=["payment_channel", "-id"]),  # the admin list's filter
        ]

    def __str__(self) -> str:
        return f"FT{self.pk} {self.get_type_display()} {self.amount}"

    def clean_fields(self, exclude=None):
        # Checked here rather than in clean(): a field error excludes the field from the
        # constraint checks that follow, so the clerk sees one clear message, not two.
        errors = {}
        try:
            super().clean_fields(exclude=exclude)
        except ValidationError as err:
            errors = err.update_error_dict(errors)
        if "amount" not in errors and self.amount is not None and self.amount <= 0:
            errors["amount"] = [ValidationError(_("The amount must be greater than zero."), code="not_positive")]
        if errors:
            raise ValidationError(errors)

    # The fields that decide whose money moves, how much and where: changing one makes a maker.
    MONEY_FIELDS = ("distributor", "type", "amount", "payment_channel", "payer_account", "receiving_account")

    @property
    def is_editable(self) -> bool:
        # A reversal mirrors its original exactly: it is never edited into another transaction.
        return self.status == FundTransactionStatus.DRAFT and not self.reverses_id

    def signed_posting(self) -> tuple[str, Decimal]:
        """The account this transaction moves and the signed amount (negated for a reversal)."""
        account_kind, direction = FUND_TRANSACTION_POSTINGS[self.type]
        sign = -direction if self.reverses_id else direction
        return account_kind, self.amount * sign


class SyncStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SUBMITTING = "submitting", _("Submitting")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    MANUAL_REVIEW = "manual_review", _("Manual review")


@pghistory.track()
class ErpSync(models.Model):
    """One fund transaction pushed to one ERP system, through the order lifecycle of docs/design.md.

    The client reference is fixed when the row is created (in the approval transaction), before
    any byte is sent; (fund_transaction, target) is unique, so a record reaches an ERP once.
    """

    fund_transaction = models.ForeignKey(
        FundTransaction, on_delete=models.PROTECT, related_name="erp_syncs", verbose_name=_("fund transaction")
    )
    target = models.CharField(_("ERP system"), max_length=16, choices=Provider.choices_of(ERP_PROVIDERS))
    merchant_account = models.CharField(_("merchant account"), max_length=32, default="default")
    client_reference = models.CharField(_("client reference"), max_length=64)
    status = models.CharField(_("status"), max_length=16, choices=SyncStatus.choices, default=SyncStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    upstream_reference = models.CharField(_("upstream reference"), max_length=64, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    review_note = models.CharField(_("review note"), max_length=255, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=_("reviewed by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_index=True)

    class Meta:
        verbose_name = _("ERP sync")
        verbose_name_plural = _("ERP syncs")
        ordering = ["-id"]
        permissions = [
            ("retry_erpsync", _("Can retry a failed ERP sync")),
            ("resolve_erpsync", _("Can resolve an ERP sync under manual review")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["fund_transaction", "target"], name="erp_sync_once_per_target"),
            models.UniqueConstraint(fields=["target", "client_reference"], name="erp_sync_client_reference_unique"),
        ]
        indexes = [models.Index(fields=["status", "-id"])]

    def __str__(self) -> str:
        return f"{self.get_target_display()} {self.client_reference}"
