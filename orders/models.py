"""Products, recharge orders (single and in batches), card secrets and upstream callbacks."""

from __future__ import annotations

import secrets

import pghistory
import pgtrigger
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from distributors.models import MONEY, Distributor
from orders.pins import masked_card_number
from providers.models import ORDER_PROVIDERS, Provider


class OrderKind(models.TextChoices):
    DIRECT_CHARGE = "direct_charge", _("Direct charge")
    GIFT_CARD = "gift_card", _("Gift card")


@pghistory.track()
class Product(models.Model):
    """Something a distributor can order. 17bst products are synced; redemption ones are configured."""

    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices_of(ORDER_PROVIDERS))
    code = models.CharField(_("product code"), max_length=64)
    name = models.CharField(_("name"), max_length=128)
    kind = models.CharField(_("kind"), max_length=16, choices=OrderKind.choices)
    business_type = models.CharField(_("business type"), max_length=64, blank=True)
    face_value = models.DecimalField(_("face value"), null=True, blank=True, **MONEY)
    cost_price = models.DecimalField(
        _("settlement price"), null=True, blank=True, help_text=_("What the upstream charges us."), **MONEY
    )
    sale_price = models.DecimalField(
        _("price to distributors"), null=True, blank=True, help_text=_("What a distributor pays per unit."), **MONEY
    )
    discount = models.DecimalField(_("discount (%)"), max_digits=6, decimal_places=2, null=True, blank=True)
    province = models.CharField(_("province"), max_length=32, blank=True)
    arrival_type = models.CharField(_("arrival type"), max_length=16, blank=True)
    needs_face_value = models.BooleanField(
        _("face value given per order"), default=False, help_text=_("The order states the amount to charge.")
    )
    active = models.BooleanField(_("on sale"), default=True)
    merchant_account = models.CharField(_("merchant account"), max_length=32, default="default")
    synced_at = models.DateTimeField(_("last synced"), null=True, blank=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["provider", "code"]
        constraints = [models.UniqueConstraint(fields=["provider", "code"], name="product_unique_per_provider")]
        permissions = [("sync_product", _("Can sync products and the upstream balance"))]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class OrderStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    QUEUED = "queued", _("Queued")
    SUBMITTING = "submitting", _("Submitting")
    ACCEPTED = "accepted", _("Accepted (processing upstream)")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    UNKNOWN = "unknown", _("Unknown")
    MANUAL_REVIEW = "manual_review", _("Manual review")


FINAL_ORDER_STATUSES = {OrderStatus.SUCCEEDED, OrderStatus.FAILED}

# The lifecycle of docs/design.md: every status change goes through orders.services.order_transition.
ORDER_TRANSITIONS: dict[str, set[str]] = {
    OrderStatus.DRAFT: {OrderStatus.QUEUED},
    OrderStatus.QUEUED: {OrderStatus.SUBMITTING},
    OrderStatus.SUBMITTING: {
        OrderStatus.ACCEPTED, OrderStatus.SUCCEEDED, OrderStatus.FAILED, OrderStatus.UNKNOWN,
        OrderStatus.QUEUED,  # nothing reached the upstream: safe to queue again
    },
    OrderStatus.ACCEPTED: {OrderStatus.SUCCEEDED, OrderStatus.FAILED, OrderStatus.MANUAL_REVIEW},
    OrderStatus.UNKNOWN: {OrderStatus.ACCEPTED, OrderStatus.SUCCEEDED, OrderStatus.FAILED, OrderStatus.MANUAL_REVIEW},
    OrderStatus.MANUAL_REVIEW: {OrderStatus.SUCCEEDED, OrderStatus.FAILED},
    OrderStatus.SUCCEEDED: set(),
    OrderStatus.FAILED: set(),
}


def new_client_reference() -> str:
    """Our order number, sent as bizCode / reqStreamId: date, then 12 random hex digits (20 chars)."""
    return timezone.localdate().strftime("%Y%m%d") + secrets.token_hex(6).upper()


@pghistory.track()
class OrderBatch(models.Model):
    """A batch of direct charges for one product, submitted through the platform's order/batch."""

    batch_code = models.CharField(_("batch code"), max_length=32, unique=True, default=new_client_reference)
    distributor = models.ForeignKey(Distributor, on_delete=models.PROTECT, verbose_name=_("distributor"))
    product = models.ForeignKey(Product, on_delete=models.PROTECT, verbose_name=_("product"))
    chunk_size = models.PositiveSmallIntegerField(_("items per request"), default=100)
    remark = models.CharField(_("remark"), max_length=255, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
                                   verbose_name=_("created by"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("batch direct charge")
        verbose_name_plural = _("batch direct charges")
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.batch_code


@pghistory.track()
class RechargeOrder(models.Model):
    distributor = models.ForeignKey(
        Distributor, on_delete=models.PROTECT, related_name="orders", verbose_name=_("distributor")
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders", verbose_name=_("product"))
    provider = models.CharField(
        _("provider"), max_length=16, choices=Provider.choices_of(ORDER_PROVIDERS), editable=False
    )
    merchant_account = models.CharField(_("merchant account"), max_length=32, default="default", editable=False)
    kind = models.CharField(_("kind"), max_length=16, choices=OrderKind.choices, editable=False)
    batch = models.ForeignKey(
        OrderBatch, on_delete=models.PROTECT, null=True, blank=True, related_name="orders", verbose_name=_("batch")
    )
    target_account = models.CharField(_("account to charge"), max_length=128, blank=True)
    mobile = models.CharField(_("mobile"), max_length=20, blank=True)
    attach_values = models.CharField(_("extra account values"), max_length=512, blank=True)
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    face_value = models.DecimalField(_("face value"), null=True, blank=True, **MONEY)
    client_reference = models.CharField(
        _("order number"), max_length=32, unique=True, default=new_client_reference, editable=False,
        help_text=_("Sent upstream as bizCode / reqStreamId; fixed when the order is created."),
    )
    price_charged = models.DecimalField(_("price charged"), editable=False, **MONEY)
    upstream_order_no = models.CharField(_("upstream order number"), max_length=64, blank=True)
    settlement_price = models.DecimalField(_("settlement price"), null=True, blank=True, **MONEY)
    status = models.CharField(
        _("status"), max_length=16, choices=OrderStatus.choices, default=OrderStatus.DRAFT, editable=False
    )
    status_reason = models.TextField(_("status detail"), blank=True)
    query_attempts = models.PositiveSmallIntegerField(_("status queries"), default=0)
    next_query_at = models.DateTimeField(_("next status query"), null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
                                   verbose_name=_("created by"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+", verbose_name=_("decided by"))

    class Meta:
        verbose_name = _("recharge order")
        verbose_name_plural = _("recharge orders")
        ordering = ["-id"]
        permissions = [
            ("place_rechargeorder", _("Can place recharge orders (moves money)")),
            ("resolve_rechargeorder", _("Can decide orders under manual review")),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="order_quantity_positive"),
            models.CheckConstraint(condition=models.Q(price_charged__gte=0), name="order_price_not_negative"),
        ]
        indexes = [
            models.Index(fields=["status", "-id"]),
            models.Index(fields=["distributor", "-id"]),
            models.Index(fields=["provider", "status", "-id"]),
            models.Index(fields=["status", "next_query_at"]),
            models.Index(fields=["batch", "status"]),
            models.Index(fields=["upstream_order_no"]),
            # Behind the admin list's filters and searches (orders.admin.RechargeOrderAdmin).
            models.Index(fields=["provider", "-id"]),
            models.Index(fields=["kind", "-id"]),
            models.Index(fields=["created_at"]),
            models.Index(fields=["target_account"]),
        ]

    def __str__(self) -> str:
        return self.client_reference


@pghistory.track(pghistory.InsertEvent())
class CardSecret(models.Model):
    """A gift card handed back by an upstream. The PIN is stored only encrypted (orders.pins)."""

    order = models.ForeignKey(RechargeOrder, on_delete=models.PROTECT, related_name="card_secrets",
                              verbose_name=_("order"))
    card_number = models.CharField(_("card number"), max_length=128)
    pin_ciphertext = models.BinaryField(_("encrypted PIN"), editable=False)
    expires_at = models.DateField(_("expires"), null=True, blank=True)
    created_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("card secret")
        verbose_name_plural = _("card secrets")
        ordering = ["-id"]
        permissions = [
            ("reveal_cardsecret", _("Can reveal card PINs")),
            ("export_cardsecret", _("Can export card PINs")),
        ]
        constraints = [models.UniqueConstraint(fields=["order", "card_number"], name="card_secret_unique_per_order")]

    def __str__(self) -> str:
        # Shown wherever a card is named (titles, breadcrumbs, links, confirmations): masked.
        return masked_card_number(self.card_number)


class PinDisclosure(models.Model):
    """Who saw which PIN, when and how. Append-only, like the ledger."""

    class Channel(models.TextChoices):
        REVEAL = "reveal", _("Shown on screen")
        EXPORT = "export", _("Exported to Excel")

    card_secret = models.ForeignKey(CardSecret, on_delete=models.PROTECT, related_name="disclosures",
                                    verbose_name=_("card secret"))
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
                             verbose_name=_("user"))
    channel = models.CharField(_("how"), max_length=8, choices=Channel.choices)
    at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("PIN disclosure")
        verbose_name_plural = _("PIN disclosures")
        ordering = ["-id"]
        # The disclosure log is evidence: the database refuses to change or remove it.
        triggers = [pgtrigger.Protect(name="disclosure_append_only", operation=pgtrigger.Update | pgtrigger.Delete)]

    def __str__(self) -> str:
        return f"{self.card_secret_id} {self.user_id} {self.channel}"


class CallbackNonce(models.Model):
    """Nonces of accepted callbacks: a replay with a seen nonce is refused by the unique constraint."""

    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices_of(ORDER_PROVIDERS))
    nonce = models.CharField(_("nonce"), max_length=128)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("callback nonce")
        verbose_name_plural = _("callback nonces")
        constraints = [models.UniqueConstraint(fields=["provider", "nonce"], name="callback_nonce_once")]

    def __str__(self) -> str:
        return f"{self.provider} {self.nonce}"


@pghistory.track()
class UpstreamBalance(models.Model):
    """Our own balance at 17bst, as last read (credit, frozen, commission)."""

    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices_of(ORDER_PROVIDERS))
    merchant_account = models.CharField(_("merchant account"), max_length=32, default="default")
    credit = models.DecimalField(_("available credit"), **MONEY)
    frozen = models.DecimalField(_("frozen"), **MONEY)
    commission = models.DecimalField(_("commission"), **MONEY)
    read_at = models.DateTimeField(_("read at"), auto_now=True)

    class Meta:
        verbose_name = _("upstream balance")
        verbose_name_plural = _("upstream balances")
        constraints = [
            models.UniqueConstraint(fields=["provider", "merchant_account"], name="upstream_balance_once"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.merchant_account}"
