from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from config.admin_actions import confirmed_action
from config.admin_mixins import ReadOnlyAdminMixin, ReadOnlyInlineMixin
from config.admin_paging import LargeTableAdminMixin, RelatedCodeSearchMixin
from config.imports import file_import_create
from config.models import FileJobKind
from config.redirects import next_url
from config.spreadsheet_import import FileRefused
from config.spreadsheets import xlsx_bytes
from distributors.resources import XLSX_CONTENT_TYPE
from orders.forms import BatchImportForm, BatchItemForm, BatchItemFormSet, DecisionNoteForm, RechargeOrderForm
from orders.imports import TEMPLATE_HEADERS
from orders.models import (
    CardSecret,
    OrderBatch,
    OrderKind,
    OrderStatus,
    PinDisclosure,
    Product,
    RechargeOrder,
    UpstreamBalance,
)
from orders.pins import masked, masked_card_number
from orders.selectors import batch_progress
from orders.services import (
    ORDER_EDITABLE_FIELDS,
    batch_place,
    card_secret_reveal,
    card_secrets_export,
    order_create,
    order_resolve,
    order_update,
    orders_place,
)
from providers.exceptions import ProviderError
from providers.models import Provider


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "provider", "kind", "face_value", "cost_price", "sale_price", "province",
                    "arrival_type", "active", "synced_at"]
    list_filter = ["provider", "kind", "active"]
    search_fields = ["=code", "^code", "name"]
    list_editable = ["sale_price", "active"]
    change_list_template = "admin/orders/product/change_list.html"

    def get_readonly_fields(self, request, obj=None):
        # Synced 17bst products take their upstream fields from 17bst; only our price is ours.
        if obj is not None and obj.provider == Provider.BST17:
            return ["provider", "code", "name", "kind", "business_type", "face_value", "cost_price", "discount",
                    "province", "arrival_type", "synced_at"]
        return ["synced_at"]

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [path("sync/", self.admin_site.admin_view(self.sync_view), name="orders_product_sync"),
                *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_sync": request.user.has_perm("orders.sync_product"),
            "upstream_balances": UpstreamBalance.objects.all(),
        }
        return super().changelist_view(request, extra_context)

    def sync_view(self, request):
        """Sync 17bst products and read our 17bst balance now (POST only)."""
        from orders.services import products_sync_bst17, upstream_balance_refresh

        if request.method != "POST" or not request.user.has_perm("orders.sync_product"):
            raise PermissionDenied
        try:
            created, updated = products_sync_bst17()
            balance = upstream_balance_refresh()
        except ProviderError as err:
            self.message_user(request, _("17bst could not be read: %(error)s") % {"error": err}, messages.ERROR)
        else:
            self.message_user(
                request,
                _("17bst products synced: %(created)d new, %(updated)d updated. Balance: %(credit)s available.")
                % {"created": created, "updated": updated, "credit": balance.credit},
                messages.SUCCESS,
            )
        return HttpResponseRedirect(next_url(request, default=reverse("admin:orders_product_changelist")))


class CardSecretInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = CardSecret
    fields = ["card", "pin", "expires_at", "created_at"]

    @admin.display(description=gettext_lazy("card number"))
    def card(self, card: CardSecret) -> str:
        return masked_card_number(card.card_number)

    @admin.display(description=gettext_lazy("PIN"))
    def pin(self, card: CardSecret) -> str:
        return masked()


@admin.register(RechargeOrder)
class RechargeOrderAdmin(RelatedCodeSearchMixin, LargeTableAdminMixin, admin.ModelAdmin):
    list_display = ["client_reference", "distributor", "product", "kind", "target_account", "quantity",
                    "price_charged", "status", "upstream_order_no", "created_at"]
    # Every filter has an index ending in -id (the list's order), or is a date range on created_at;
    # no date_hierarchy: it aggregates the dates of the whole table on every page load.
    list_filter = ["status", "provider", "kind", ("created_at", admin.DateFieldListFilter)]
    # Case-sensitive lookups on purpose: these codes are machine-made, and plain b-tree indexes serve
    # = and LIKE 'prefix%' (a distributor's code: related_code_search).
    search_fields = ["client_reference__startswith", "upstream_order_no__exact", "target_account__exact"]
    related_code_search = ("distributor", "code")
    list_select_related = ["distributor", "product"]
    autocomplete_fields = ["distributor"]
    raw_id_fields = ["batch"]
    inlines = [CardSecretInline]
    fields = ["distributor", "product", "target_account", "mobile", "attach_values", "quantity", "face_value",
              "client_reference", "provider", "kind", "price_charged", "status", "status_reason", "upstream_order_no",
              "settlement_price", "query_attempts", "next_query_at", "batch", "created_by", "created_at",
              "queued_at", "submitted_at", "finished_at", "decided_by"]
    readonly_fields = ["client_reference", "provider", "kind", "price_charged", "status", "status_reason",
                       "upstream_order_no", "settlement_price", "query_attempts", "next_query_at", "batch",
                       "created_by", "created_at", "queued_at", "submitted_at", "finished_at", "decided_by"]
    actions = ["place", "resolve_succeeded", "resolve_failed"]
    form = RechargeOrderForm

    def has_change_permission(self, request, obj=None):
        # Placed orders are history; a batch's items are fixed (their product is the batch's).
        if obj is not None and (obj.status != OrderStatus.DRAFT or obj.batch_id):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_place_permission(self, request):
        return request.user.has_perm("orders.place_rechargeorder")

    def has_resolve_permission(self, request):
        return request.user.has_perm("orders.resolve_rechargeorder")

    def save_model(self, request, obj, form, change):
        # Both go through the services, which price the order and save only while it is a draft.
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data if name in ORDER_EDITABLE_FIELDS}
            order_update(order_id=obj.pk, **changes)
            obj.refresh_from_db()
            return
        created = order_create(
            distributor=obj.distributor, product=obj.product, actor=request.user, target_account=obj.target_account,
            mobile=obj.mobile, attach_values=obj.attach_values, quantity=obj.quantity, face_value=obj.face_value,
        )
        obj.pk = created.pk
        obj.refresh_from_db()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "product":
            kwargs["queryset"] = Product.objects.filter(active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.action(description=gettext_lazy("Place selected orders (holds the price)"), permissions=["place"])
    def place(self, request, queryset):
        def perform_all(selected, _cleaned):
            result = orders_place(ids=list(selected.values_list("pk", flat=True)), actor=request.user)
            outcome = [(messages.SUCCESS, _("%(count)d orders placed: their price is held and they are queued.")
                        % {"count": len(result.placed)})]
            outcome += [(messages.ERROR, _("Order %(id)s not placed: %(reason)s") % {"id": pk, "reason": reason})
                        for pk, reason in list(result.refused.items())[:50]]
            return outcome

        return confirmed_action(
            self, request, queryset.filter(status=OrderStatus.DRAFT, batch__isnull=True),
            title=_("Place orders"),
            explanation=_("Each order's price is held on the distributor's balance and the order is sent upstream. "
                          "A failed order releases its hold."),
            perform_all=perform_all,
        )

    @admin.action(description=gettext_lazy("Manual review: it succeeded upstream"), permissions=["resolve"])
    def resolve_succeeded(self, request, queryset):
        return self._resolve(request, queryset, succeeded=True)

    @admin.action(description=gettext_lazy("Manual review: it failed upstream (releases the hold)"),
                  permissions=["resolve"])
    def resolve_failed(self, request, queryset):
        return self._resolve(request, queryset, succeeded=False)

    def _resolve(self, request, queryset, *, succeeded: bool):
        def perform(order, cleaned):
            if not order_resolve(order_id=order.pk, actor=request.user, succeeded=succeeded, note=cleaned["note"]):
                raise ValidationError(_("it is no longer under manual review."))
            return _("Order %(order)s decided.") % {"order": order}

        return confirmed_action(
            self, request, queryset.filter(status=OrderStatus.MANUAL_REVIEW),
            title=_("Decide orders under manual review"),
            explanation=_("Check the order at the upstream first. Marking it failed gives the distributor the "
                          "money back; marking it succeeded keeps it."),
            perform=perform,
            form_class=DecisionNoteForm,
        )


class BatchItemInline(admin.TabularInline):
    """Items of a batch: typed in while the batch is a draft, read-only once it is placed."""

    model = RechargeOrder
    form = BatchItemForm
    formset = BatchItemFormSet
    fields = ["client_reference", "target_account", "attach_values", "face_value", "price_charged", "status",
              "status_reason"]
    readonly_fields = ["client_reference", "price_charged", "status", "status_reason"]
    extra = 3
    can_delete = False
    show_change_link = True

    def has_change_permission(self, request, obj=None):
        return False  # an item is never edited: make a new batch instead

    def has_add_permission(self, request, obj=None):
        if obj is not None and obj.orders.exclude(status=OrderStatus.DRAFT).exists():
            return False  # placed: its items are fixed
        return request.user.has_perm("orders.add_orderbatch")

    def get_extra(self, request, obj=None, **kwargs):
        return self.extra if self.has_add_permission(request, obj) else 0


@admin.register(OrderBatch)
class OrderBatchAdmin(admin.ModelAdmin):
    list_display = ["batch_code", "distributor", "product", "created_by", "created_at", "progress"]
    search_fields = ["=batch_code", "=distributor__code"]
    list_select_related = ["distributor", "product", "created_by"]
    autocomplete_fields = ["distributor"]
    inlines = [BatchItemInline]
    actions = ["place"]
    change_list_template = "admin/orders/orderbatch/change_list.html"
    # Above this many items the page shows the progress and links to the items instead of listing them.
    INLINE_ITEMS_LIMIT = 200

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, batch: OrderBatch) -> str:
        counts = dict(batch.orders.values_list("status").annotate(n=Count("id")).order_by())
        return ", ".join(f"{OrderStatus(status).label}: {n}" for status, n in sorted(counts.items())) or "-"

    @admin.display(description=gettext_lazy("progress"))
    def progress_panel(self, batch: OrderBatch) -> str:
        progress = batch_progress(batch_id=batch.pk)
        return render_to_string("admin/orders/orderbatch/progress.html", {
            "progress": progress,
            "items_url": reverse("admin:orders_rechargeorder_changelist") + f"?batch__id__exact={batch.pk}",
        })

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["distributor", "product", "batch_code", "chunk_size", "remark"]
        return ["batch_code", "distributor", "product", "chunk_size", "remark", "created_by", "created_at",
                "progress_panel"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["batch_code", "distributor", "product", "chunk_size", "created_by", "created_at", "progress_panel"]

    def get_inlines(self, request, obj):
        if obj is not None and obj.orders.count() > self.INLINE_ITEMS_LIMIT:
            return []
        return self.inlines

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "product":
            kwargs["queryset"] = Product.objects.filter(
                provider=Provider.EXCHANGE, kind=OrderKind.DIRECT_CHARGE, active=True
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_place_permission(self, request):
        return request.user.has_perm("orders.place_rechargeorder")

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.orders.exclude(status=OrderStatus.DRAFT).exists():
            return False  # placed: fixed, like its items and like a placed order
        return super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        if formset.model is not RechargeOrder:
            return super().save_formset(request, form, formset, change)
        # New items go through order_create (price, checks), never through the form's save.
        batch = form.instance
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for item_form in formset.forms:
            if item_form.instance.pk or not item_form.has_changed() or not item_form.cleaned_data:
                continue
            data = item_form.cleaned_data
            formset.new_objects.append(order_create(
                distributor=batch.distributor, product=batch.product, actor=request.user, batch=batch,
                target_account=data.get("target_account") or "", attach_values=data.get("attach_values") or "",
                face_value=data.get("face_value"),
            ))

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_import": self.has_add_permission(request)}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="orders_orderbatch_import"),
            path("import/template/<str:language>/", self.admin_site.admin_view(self.template_view),
                 name="orders_orderbatch_import_template"),
            *super().get_urls(),
        ]

    def template_view(self, request, language: str):
        if not self.has_view_or_change_permission(request) or language not in TEMPLATE_HEADERS:
            raise PermissionDenied
        content = xlsx_bytes(title="batch", header=TEMPLATE_HEADERS[language], rows=[])
        response = HttpResponse(content, content_type=XLSX_CONTENT_TYPE)
        response["Content-Disposition"] = f'attachment; filename="batch-direct-charge-{language}.xlsx"'
        return response

    def import_view(self, request):
        """Upload: the file becomes an import job, checked in the background; its page is the preview."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = BatchImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload, data = form.cleaned_data["file"], form.cleaned_data
            try:
                job = file_import_create(
                    kind=FileJobKind.ORDER_BATCH_IMPORT, actor=request.user, filename=upload.name,
                    content=upload.read(), language=get_language(),
                    options={"distributor_id": data["distributor"].pk, "product_id": data["product"].pk,
                             "batch_code": data["batch_code"], "remark": data["remark"]},
                )
            except FileRefused as refused:
                form.add_error("file", str(refused))
            else:
                return HttpResponseRedirect(reverse("admin:backoffice_filejob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import a batch direct charge"),
            "opts": self.model._meta,
            "form": form,
            "templates": [(language, reverse("admin:orders_orderbatch_import_template", args=[language]))
                          for language in TEMPLATE_HEADERS],
        }
        return TemplateResponse(request, "admin/orders/orderbatch/import.html", context)

    @admin.action(description=gettext_lazy("Place selected batches (holds the price of every item)"),
                  permissions=["place"])
    def place(self, request, queryset):
        def perform(batch, _cleaned):
            count = batch_place(batch_id=batch.pk, actor=request.user)
            return _("Batch %(batch)s: %(count)d items held and queued.") % {"batch": batch, "count": count}

        return confirmed_action(
            self, request, queryset,
            title=_("Place batches"),
            explanation=_("Every draft item's price is held on the distributor's balance, all or nothing, and the "
                          "items are sent in chunks through the redemption platform."),
            perform=perform,
        )


@admin.register(CardSecret)
class CardSecretAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Card numbers are masked like the PINs; only the recorded reveal page and export show them whole.
    # A search by the exact full number still finds its card (it shows nothing the clerk did not type).
    list_display = ["card", "pin", "expires_at", "order", "distributor", "created_at"]
    search_fields = ["=card_number", "=order__client_reference"]
    list_select_related = ["order__distributor"]
    fields = ["order", "card", "pin", "expires_at", "created_at"]
    readonly_fields = fields
    actions = ["reveal", "export_xlsx"]
    show_full_result_count = False

    @admin.display(description=gettext_lazy("card number"))
    def card(self, card: CardSecret) -> str:
        return masked_card_number(card.card_number)

    @admin.display(description=gettext_lazy("PIN"))
    def pin(self, card: CardSecret) -> str:
        return masked()

    @admin.display(description=gettext_lazy("distributor"))
    def distributor(self, card: CardSecret):
        return card.order.distributor

    def has_reveal_permission(self, request):
        return request.user.has_perm("orders.reveal_cardsecret")

    def has_export_permission(self, request):
        return request.user.has_perm("orders.export_cardsecret")

    @admin.action(description=gettext_lazy("Reveal PINs (recorded)"), permissions=["reveal"])
    def reveal(self, request, queryset):
        if "confirmed" not in request.POST:
            return confirmed_action(
                self, request, queryset, title=_("Reveal PINs"),
                explanation=_("The PINs are shown once on the next page and each reveal is recorded with your name."),
                perform=lambda *_: None, limit=50,
            )
        cards = list(queryset.select_related("order")[:50])
        rows = [(card, card_secret_reveal(card_secret=card, actor=request.user)) for card in cards]
        response = TemplateResponse(request, "admin/orders/cardsecret/revealed.html", {
            **self.admin_site.each_context(request), "title": _("Revealed PINs"), "rows": rows,
            "opts": self.model._meta,
        })
        # A page with PINs must not be kept by the browser or any proxy.
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description=gettext_lazy("Export PINs to Excel (recorded)"), permissions=["export"])
    def export_xlsx(self, request, queryset):
        if "confirmed" not in request.POST:
            return confirmed_action(
                self, request, queryset, title=_("Export PINs"),
                explanation=_("The file holds PINs in clear: keep it safe. Each exported PIN is recorded with your name."),
                perform=lambda *_: None, limit=5000,
            )
        cards = list(queryset.select_related("order__distributor")[:5000])
        rows = card_secrets_export(card_secrets=cards, actor=request.user)
        content = xlsx_bytes(
            title="cards",
            header=[_("order number"), _("distributor"), _("card number"), _("PIN"), _("expires")],
            rows=[[c.order.client_reference, c.order.distributor.code, c.card_number, pin, c.expires_at]
                  for c, pin in rows],
        )
        response = HttpResponse(content, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        response["Content-Disposition"] = 'attachment; filename="card-secrets.xlsx"'
        response["Cache-Control"] = "no-store"
        return response


@admin.register(PinDisclosure)
class PinDisclosureAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "user", "channel", "card_secret"]
    list_filter = ["channel", ("at", admin.DateFieldListFilter)]
    list_select_related = ["user", "card_secret"]
    search_fields = ["=card_secret__card_number", "=user__username"]


@admin.register(UpstreamBalance)
class UpstreamBalanceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["provider", "merchant_account", "credit", "frozen", "commission", "read_at"]
