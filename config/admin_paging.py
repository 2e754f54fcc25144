"""Admin lists that stay fast on tables of millions of rows.

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

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property


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


class LargeTableAdminMixin:
    """The list options every million-row changelist shares."""

    paginator = LargeTablePaginator
    show_full_result_count = False  # the "N total" link would count the whole table
    show_facets = admin.ShowFacets.NEVER  # facet counts aggregate the whole filtered list per filter choice


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
