"""Admin lists that stay fast on tables of millions of rows.

Counting (below) and rendering (`LargeTableAdminMixin`): a page of 100 rows is some 1,000 cells,
so whatever the admin does per row is done 100 times on every page load.

Django's changelist counts the rows it lists with COUNT(*) on every page load: a full scan of
a million-row table each time. `LargeTablePaginator` counts without scanning:

- an unfiltered list takes PostgreSQL's own row estimate (pg_class.reltuples, kept by ANALYZE),
  or an exact count while the table is small;
- a filtered or searched list is counted exactly up to `exact_count_limit` rows; past that it
  shows the planner's estimate of the filtered rows (pages past the real end are then empty).

No count ever reads more than `exact_count_limit` + 1 rows, and the count costs the same
number of queries at any size: one for an unfiltered list, two (the estimate, then the capped
count) for a filtered one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _


class LargeTablePaginator(Paginator):
    exact_count_limit = 10_000

    @cached_property
    def count(self) -> int:
        if not isinstance(self.object_list, QuerySet):
            return super().count
        queryset = self.counted(self.object_list)
        tables = self.estimate_tables(queryset)
        if tables:
            return self._unfiltered_count(queryset, tables)
        return self._filtered_count(queryset)

    def page(self, number):
        queryset = self.object_list
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        if not isinstance(queryset, QuerySet) or bottom == 0:
            return self._get_page(queryset[bottom:top], number, self)
        # A deep page: OFFSET skips its rows in the index alone (the keys subquery), and only the
        # page's own rows are read from the table, instead of every row before them.
        keys = queryset.values("pk")[bottom:top]
        return self._get_page(queryset.filter(pk__in=keys), number, self)

    def counted(self, queryset: QuerySet) -> QuerySet:
        """The queryset to count: the listed one, or a cheaper one returning the same rows."""
        return queryset

    def estimate_tables(self, queryset: QuerySet) -> Sequence[str]:
        """The tables whose estimates add up to the list's row count; empty when the list is filtered."""
        if queryset.query.has_filters():
            return []
        return [queryset.model._meta.db_table]

    def _unfiltered_count(self, queryset: QuerySet, tables: Sequence[str]) -> int:
        # One statement: the estimate, or the exact count when the tables are small (or were never
        # analyzed: reltuples is then -1). The count runs only in that case (a lazy InitPlan), and
        # is capped all the same, in case the tables grew since ANALYZE last ran.
        capped = queryset.order_by().values("pk")[: self.exact_count_limit + 1]
        inner_sql, params = capped.query.get_compiler(using=queryset.db).as_sql()
        sql = (
            "SELECT CASE WHEN estimate.rows >= %s THEN estimate.rows::bigint "
            f"ELSE (SELECT COUNT(*) FROM ({inner_sql}) AS listed) END "
            "FROM (SELECT SUM(reltuples) AS rows FROM pg_class WHERE oid = ANY(%s::regclass[])) AS estimate"
        )
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(sql, [self.exact_count_limit, *params, list(tables)])
            return int(cursor.fetchone()[0])

    def _filtered_count(self, queryset: QuerySet) -> int:
        estimate = planner_estimate(queryset)
        capped = queryset.order_by()[: self.exact_count_limit + 1].count()
        if capped <= self.exact_count_limit:
            return capped
        return max(estimate, capped)


def planner_estimate(queryset: QuerySet) -> int:
    """The number of rows PostgreSQL expects `queryset` to return (EXPLAIN, nothing is run)."""
    sql, params = queryset.order_by().query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


PK_PLACEHOLDER = "__pk__"


class ResultUrlChangeListMixin:
    """Each row's link to its change page, built without a reverse() and a resolve() per row.

    The change URL is reversed once per page with a placeholder for the key, which each row fills
    in quoted exactly as reverse() would have quoted it (the admin's quote, then RFC 3986). The
    filters the link carries back to this list are added once too: the admin's
    add_preserved_filters resolves the URL of every row it is given them for, which on a
    filtered, searched or paged list walks the admin's URL patterns 100 times per page.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.row_preserved_filters = self.preserved_filters
        self.preserved_filters = ""  # read only by the row links: they carry them already

    @cached_property
    def _change_url_parts(self) -> tuple[str, str, str]:
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=(PK_PLACEHOLDER,),
            current_app=self.model_admin.admin_site.name,
        )
        prefix, _placeholder, suffix = url.rpartition(PK_PLACEHOLDER)
        context = {"preserved_filters": self.row_preserved_filters, "opts": self.opts}
        query = urlsplit(add_preserved_filters(context, url)).query
        return prefix, suffix, f"?{query}" if query else ""

    def url_for_result(self, result) -> str:
        prefix, suffix, query = self._change_url_parts
        key = url_quote(str(quote(getattr(result, self.pk_attname))), safe=RFC3986_SUBDELIMS + "/~:@")
        return f"{prefix}{key}{suffix}{query}"


class LargeTableChangeList(ResultUrlChangeListMixin, ChangeList):
    pass


class LargeTableAdminMixin:
    """The list options every million-row changelist shares."""

    paginator = LargeTablePaginator
    show_full_result_count = False  # the "N total" link would count the whole table
    show_facets = admin.ShowFacets.NEVER  # facet counts aggregate the whole filtered list per filter choice

    def get_changelist(self, request, **kwargs):
        return LargeTableChangeList

    def action_checkbox(self, obj):
        # The same <input> as Django's, written directly: Django renders a CheckboxInput through
        # the form templates for every row, a template render per row for one fixed tag.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            format_html(_("Select this object for an action - {}"), str(obj)),
        )

    def get_empty_value_display(self):
        # Asked for every cell; Django's version raises and catches an AttributeError each time
        # the ModelAdmin sets no empty_value_display of its own, then calls the lazy-aware mark_safe.
        return SafeString(getattr(self, "empty_value_display", None) or self.admin_site.empty_value_display)


class RelatedCodeSearchMixin:
    """A search term that is a related row's code (a distributor's, say) lists that row's records.

    Searching `distributor__code` together with the list's own columns would OR a condition on
    the joined table with conditions on the listed one, which no index serves: PostgreSQL would
    scan the whole list. The code is looked up first (one query on the small related table), and
    a match becomes a plain filter on the foreign key, served by its (fk, -id) index.
    """

    related_code_search: tuple[str, str] | None = None  # (foreign key, code field of the related model)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if self.related_code_search and term:
            foreign_key, code_field = self.related_code_search
            related = queryset.model._meta.get_field(foreign_key).related_model
            match = related._default_manager.filter(**{f"{code_field}__iexact": term}).values_list("pk", flat=True)
            pk = match.first()
            if pk is not None:
                return queryset.filter(**{foreign_key: pk}), False
        return super().get_search_results(request, queryset, search_term)


class IndexedPairFilter(admin.SimpleListFilter):
    """A filter on two columns at once whose choices are read from their index, not from the table.

    Django's filter on a column without choices lists SELECT DISTINCT over the whole table; this
    walks the (first, second, ...) b-tree index from one distinct pair to the next (a "loose index
    scan", one index probe per pair), so it costs the same on a million rows as on ten.
    """

    columns: tuple[str, str]
    separator = ":"

    def lookups(self, request, model_admin):
        first, second = (model_admin.model._meta.get_field(name) for name in self.columns)
        table = connections[model_admin.model.objects.db].ops.quote_name(model_admin.model._meta.db_table)
        a, b = first.column, second.column
        sql = f"""
            WITH RECURSIVE pairs(a, b) AS (
                (SELECT "{a}", "{b}" FROM {table} ORDER BY "{a}", "{b}" LIMIT 1)
                UNION ALL
                SELECT next.a, next.b FROM pairs, LATERAL (
                    SELECT "{a}" AS a, "{b}" AS b FROM {table}
                    WHERE ("{a}", "{b}") > (pairs.a, pairs.b) ORDER BY "{a}", "{b}" LIMIT 1
                ) AS next
            )
            SELECT a, b FROM pairs
        """
        with connections[model_admin.model.objects.db].cursor() as cursor:
            cursor.execute(sql)
            pairs = cursor.fetchall()
        labels = dict(first.flatchoices)
        return [(f"{x}{self.separator}{y}", f"{labels.get(x, x)}: {y}") for x, y in pairs]

    def queryset(self, request, queryset):
        value = self.value()
        if not value or self.separator not in value:
            return queryset
        x, y = value.split(self.separator, 1)
        return queryset.filter(**{self.columns[0]: x, self.columns[1]: y})
