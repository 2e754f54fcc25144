from __future__ import annotations

import datetime

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from distributors.models import AccountKind, FundTransaction


class FundTransactionImportForm(forms.Form):
    file = forms.FileField(
        label=_("file"),
        help_text=_("An .xlsx workbook or a .csv file with the template's column headers."),
    )

    def clean_file(self):
        from config.imports import clean_upload

        return clean_upload(self.cleaned_data["file"])


class StatementForm(forms.Form):
    account = forms.ChoiceField(label=_("account"), choices=AccountKind.choices, initial=AccountKind.PREPAID)
    start = forms.DateField(label=_("from"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("to"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data=None, **kwargs):
        today = timezone.localdate()
        defaults = {"account": AccountKind.PREPAID, "start": today.replace(day=1), "end": today}
        super().__init__({**defaults, **(data.dict() if data else {})}, **kwargs)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start > end:
            raise forms.ValidationError(_("The start date must not be after the end date."))
        if start and end and (end - start) > datetime.timedelta(days=366):
            raise forms.ValidationError(_("A statement covers at most one year."))
        return cleaned


class FundTransactionForm(forms.ModelForm):
    """A fund transaction typed in the admin.

    The admin saves a change inside one transaction (ModelAdmin.changeform_view), so the row lock
    taken here holds until the save: a draft submitted or approved while the clerk was editing it
    is refused here, never overwritten.
    """

    class Meta:
        model = FundTransaction
        # Every field the model lets a form edit, named so that a new field is never exposed by default.
        fields = [
            "distributor", "type", "amount", "payment_channel", "payer_account", "receiving_account", "voucher_no",
            "completed_at", "remark", "external_reference", "status", "reverses", "created_by", "submitted_at",
            "decided_by", "decided_at", "rejection_reason",
        ]

    def clean(self):
        from distributors.fund_transactions import TransitionRefused, fund_transaction_lock_editable

        cleaned = super().clean()
        if self.instance.pk:
            try:
                fund_transaction_lock_editable(self.instance.pk)
            except TransitionRefused as err:
                raise forms.ValidationError(err.messages) from None
        return cleaned
