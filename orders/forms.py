from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from orders.models import OrderStatus, RechargeOrder


class DecisionNoteForm(forms.Form):
    note = forms.CharField(label=_("what you checked upstream"), max_length=255)


class BatchImportForm(forms.Form):
    """Step one of a batch import: who, what, and the file. Nothing is created from it yet."""

    distributor = forms.ModelChoiceField(label=_("distributor"), queryset=None)
    product = forms.ModelChoiceField(label=_("product"), queryset=None)
    batch_code = forms.CharField(
        label=_("batch code"), max_length=32, required=False,
        help_text=_("Leave empty to have one assigned."),
    )
    remark = forms.CharField(label=_("remark"), max_length=255, required=False)
    file = forms.FileField(
        label=_("file"),
        help_text=_("An .xlsx or .csv file whose first row holds the column headers: account, attach values, face value."),
    )

    def __init__(self, *args, **kwargs):
        from distributors.models import Distributor, DistributorStatus
        from orders.models import OrderKind, Product
        from providers.models import Provider

        super().__init__(*args, **kwargs)
        self.fields["distributor"].queryset = Distributor.objects.filter(status=DistributorStatus.ACTIVE)
        self.fields["product"].queryset = Product.objects.filter(
            provider=Provider.EXCHANGE, kind=OrderKind.DIRECT_CHARGE, active=True
        )

    def clean_file(self):
        from config.imports import clean_upload

        return clean_upload(self.cleaned_data["file"])

    def clean_batch_code(self) -> str:
        from orders.models import OrderBatch

        code = self.cleaned_data["batch_code"].strip()
        if code and OrderBatch.objects.filter(batch_code=code).exists():
            raise forms.ValidationError(_("A batch with this code already exists."))
        return code


def _add_service_errors(form: forms.Form, err: forms.ValidationError) -> None:
    """A service's ValidationError on the form: by field where the form has that field."""
    if not hasattr(err, "error_dict"):
        form.add_error(None, err)
        return
    for name, errors in err.error_dict.items():
        form.add_error(name if name in form.fields else None, errors)


class RechargeOrderForm(forms.ModelForm):
    """A single order typed in the admin: checked and priced by the services before anything is saved.

    The admin saves a change inside one transaction (ModelAdmin.changeform_view), so the row lock
    taken here holds until the save: an order placed while the clerk was editing it is refused here,
    not overwritten.
    """

    class Meta:
        model = RechargeOrder
        fields = ["distributor", "product", "target_account", "mobile", "attach_values", "quantity", "face_value"]

    def clean(self):
        from orders.services import order_check, order_terms

        cleaned = super().clean()
        if self.instance.pk:
            current = RechargeOrder.objects.select_for_update(of=("self",)).only("status", "batch").get(
                pk=self.instance.pk)
            if current.status != OrderStatus.DRAFT:
                raise forms.ValidationError(_("This order is no longer a draft: it was placed meanwhile and cannot "
                                              "be changed."))
            if current.batch_id:
                raise forms.ValidationError(_("This order is an item of a batch: its items are not edited one by "
                                              "one."))
        distributor, product = cleaned.get("distributor"), cleaned.get("product")
        if distributor is None or product is None:
            return cleaned
        try:
            order_check(distributor=distributor, product=product, target_account=cleaned.get("target_account") or "",
                        quantity=cleaned.get("quantity") or 0)
            order_terms(product=product, quantity=cleaned.get("quantity") or 1, face_value=cleaned.get("face_value"))
        except forms.ValidationError as err:
            _add_service_errors(self, err)
        return cleaned


class BatchItemForm(forms.ModelForm):
    """One item typed into the batch page; checked like an imported row before anything is saved.

    The batch comes from its formset (BatchItemFormSet): on a new batch's page the item's own
    `batch` is not set yet, and the checks must run there too.
    """

    def __init__(self, *args, batch=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch = batch

    def clean(self):
        from orders.services import order_check, order_terms

        cleaned = super().clean()
        if self.instance.pk or not self.has_changed():
            return cleaned
        if not (cleaned.get("target_account") or "").strip():
            self.add_error("target_account", _("A direct charge needs the account to charge."))
            return cleaned
        batch = self.batch
        if batch is None or not (batch.product_id and batch.distributor_id):
            return cleaned  # the batch's own fields are missing: its form says so
        try:
            order_check(distributor=batch.distributor, product=batch.product,
                        target_account=cleaned["target_account"], quantity=1)
            order_terms(product=batch.product, quantity=1, face_value=cleaned.get("face_value"))
        except forms.ValidationError as err:
            _add_service_errors(self, err)
        return cleaned


class BatchItemFormSet(forms.BaseInlineFormSet):
    def get_form_kwargs(self, index):
        return {**super().get_form_kwargs(index), "batch": self.instance}
