from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from config.admin_mixins import ReadOnlyAdminMixin
from config.admin_paging import IndexedPairFilter, LargeTableAdminMixin
from providers.models import ProviderCall


class OperationFilter(IndexedPairFilter):
    """Provider and operation together: the choices come from the (provider, operation, -id) index."""

    title = _("operation")
    parameter_name = "operation"
    columns = ("provider", "operation")


@admin.register(ProviderCall)
class ProviderCallAdmin(ReadOnlyAdminMixin, LargeTableAdminMixin, admin.ModelAdmin):
    """The call log: read-only for everyone, searchable by reference and record."""

    list_display = [
        "id", "created_at", "provider", "merchant_account", "operation", "client_reference", "record",
        "response_status", "outcome", "upstream_code", "latency_ms",
    ]
    # Each filter has an (x, -id) index, or is a date range on the indexed created_at. The operation
    # filter does not list SELECT DISTINCT operation over the whole log, and there is no
    # date_hierarchy, which aggregates the dates of the whole log on every page load.
    list_filter = ["provider", OperationFilter, "outcome", "direction", ("created_at", admin.DateFieldListFilter)]
    # Exact or prefix, case-sensitive: plain b-tree indexes serve = and LIKE 'prefix%'.
    search_fields = ["client_reference__startswith", "record_id__exact", "upstream_code__exact"]
    readonly_fields = [f.name for f in ProviderCall._meta.fields]

    @admin.display(description=_("business record"))
    def record(self, call: ProviderCall) -> str:
        return f"{call.record_type} #{call.record_id}" if call.record_type else "-"

