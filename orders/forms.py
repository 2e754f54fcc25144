from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


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
        from orders.models import OrderKind, Product, UpstreamProvider

        super().__init__(*args, **kwargs)
        self.fields["distributor"].queryset = Distributor.objects.filter(status=DistributorStatus.ACTIVE)
        self.fields["product"].queryset = Product.objects.filter(
            provider=UpstreamProvider.EXCHANGE, kind=OrderKind.DIRECT_CHARGE, active=True
        )

    def clean_batch_code(self) -> str:
        from orders.models import OrderBatch

        code = self.cleaned_data["batch_code"].strip()
        if code and OrderBatch.objects.filter(batch_code=code).exists():
            raise forms.ValidationError(_("A batch with this code already exists."))
        return code


class BatchItemForm(forms.ModelForm):
    """One item typed into the batch page; checked like an imported row before anything is saved."""

    def clean(self):
        from orders.services import order_price

        cleaned = super().clean()
        if self.instance.pk or not self.has_changed():
            return cleaned
        if not (cleaned.get("target_account") or "").strip():
            self.add_error("target_account", _("A direct charge needs the account to charge."))
        batch = getattr(self.instance, "batch", None)
        product = getattr(batch, "product", None) if batch is not None and batch.product_id else None
        if product is not None:
            try:
                order_price(product=product, quantity=1, face_value=cleaned.get("face_value"))
            except forms.ValidationError as err:
                self.add_error("face_value", err.messages)
        return cleaned
