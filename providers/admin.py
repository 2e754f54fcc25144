from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from providers.models import ProviderCall


@admin.register(ProviderCall)
class ProviderCallAdmin(admin.ModelAdmin):
    """The call log: read-only for everyone, searchable by reference and record."""

    list_display = [
        "id", "created_at", "provider", "merchant_account", "operation", "client_reference", "record",
        "response_status", "outcome", "upstream_code", "latency_ms",
    ]
    list_filter = ["provider", "operation", "outcome", "direction", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=client_reference", "^client_reference", "=record_id", "=upstream_code"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = [f.name for f in ProviderCall._meta.fields]

    @admin.display(description=_("business record"))
    def record(self, call: ProviderCall) -> str:
        return f"{call.record_type} #{call.record_id}" if call.record_type else "-"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
