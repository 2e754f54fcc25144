"""Latency and query count of the big admin lists at 10,000 and at 1,000,000 rows. Prints its numbers.

    .venv/bin/python bench/admin_lists.py [small] [large]        (default 10000 1000000)

A throwaway database is created and migrated (Django's test-database machinery runs
`migrate`), loaded with `small` recharge orders, fund transactions and provider calls (each order and
fund transaction also gets its insert event, as the pghistory triggers would write it, so the
audit log holds twice as many rows), and every list below is fetched
through Django's test Client by a superuser whose session passed the second factor. The load
is then grown to `large` rows and the lists are fetched again. The database is dropped at the
end, so the development data is never touched.

For each list: plain (first page), filtered, searched (per-object history for the audit log)
and page 500 (the last page when there are fewer pages), p50/p95 over BENCH_RUNS requests
after one warm-up, the median time spent rendering the page's template (which includes formatting
its rows: the admin formats them inside its template tags), and the SQL queries of one request.

Environment: BENCH_RUNS (20), BENCH_TARGET_MS (150).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("STATIC_MANIFEST", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.db import connection, connections  # noqa: E402
from django.template.response import SimpleTemplateResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from bench.databases import bench_databases  # noqa: E402
from config.database_roles import as_owner  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", 20))
TARGET_MS = float(os.environ.get("BENCH_TARGET_MS", 150))
PER_PAGE = 100  # the admin's list_per_page
DEEP_PAGE = 500
LOAD_CHUNK = 100_000  # rows per INSERT ... SELECT, each in its own history context

DISTRIBUTORS = 200
USERS = 5


# --- loading -----------------------------------------------------------------------------------


def load_fixed_rows():
    """Distributors, products and the people who appear in the history, through the ORM."""
    from django.contrib.auth import get_user_model

    from distributors.models import Distributor
    from orders.models import OrderKind, Product
    from providers.models import Provider

    User = get_user_model()
    users = [User.objects.create_user(f"clerk{n}", password="bench-password-0123", is_staff=True)
             for n in range(USERS)]
    Distributor.objects.bulk_create(
        [Distributor(code=f"D{n:04d}", name=f"分销商 {n}") for n in range(DISTRIBUTORS)]
    )
    Product.objects.bulk_create([
        Product(provider=Provider.EXCHANGE if n % 2 else Provider.BST17, code=f"P{n:03d}",
                name=f"产品 {n}", kind=OrderKind.DIRECT_CHARGE if n % 3 else OrderKind.GIFT_CARD)
        for n in range(20)
    ])
    return users


ORDERS_SQL = """
INSERT INTO orders_rechargeorder (
    distributor_id, product_id, provider, merchant_account, kind, target_account, mobile, attach_values,
    quantity, face_value, client_reference, price_charged, upstream_order_no, settlement_price, status,
    status_reason, query_attempts, created_by_id, created_at)
SELECT
    (SELECT array_agg(id ORDER BY id) FROM distributors_distributor)[1 + g %% %(distributors)s],
    p.ids[1 + g %% 20], p.providers[1 + g %% 20], 'default', p.kinds[1 + g %% 20],
    '138' || lpad((g %% 100000000)::text, 8, '0'), '', '', 1, 100,
    to_char(ts, 'YYYYMMDD') || upper(lpad(to_hex(g), 12, '0')), 98.50, 'UP' || g, 97.00,
    CASE WHEN g %% 100 < 80 THEN 'succeeded' WHEN g %% 100 < 92 THEN 'failed' WHEN g %% 100 < 96 THEN 'accepted'
         WHEN g %% 100 < 98 THEN 'queued' WHEN g %% 100 < 99 THEN 'unknown' ELSE 'manual_review' END,
    '', 0, %(user)s, ts
FROM generate_series(%(first)s, %(last)s) AS g
CROSS JOIN LATERAL (SELECT now() - (%(total)s - g) * interval '30 seconds' AS ts) AS t
CROSS JOIN (SELECT array_agg(id ORDER BY id) AS ids, array_agg(provider ORDER BY id) AS providers,
                   array_agg(kind ORDER BY id) AS kinds FROM orders_product) AS p
"""

FUND_TRANSACTIONS_SQL = """
INSERT INTO distributors_fundtransaction (
    distributor_id, type, amount, payment_channel, payer_account, receiving_account, voucher_no, remark,
    external_reference, status, created_by_id, created_at, rejection_reason)
SELECT
    (SELECT array_agg(id ORDER BY id) FROM distributors_distributor)[1 + g %% %(distributors)s],
    (ARRAY['recharge', 'refund', 'rebate'])[1 + g %% 3], 1000 + g %% 5000,
    (ARRAY['bank_transfer', 'alipay', 'wechat'])[1 + g %% 3], '', '', 'V' || lpad(g::text, 9, '0'), '',
    CASE WHEN g %% 10 = 0 THEN 'IMP' || g ELSE '' END,
    CASE WHEN g %% 100 < 90 THEN 'approved' WHEN g %% 100 < 95 THEN 'rejected'
         WHEN g %% 100 < 98 THEN 'draft' ELSE 'pending_approval' END,
    %(user)s, now() - (%(total)s - g) * interval '30 seconds', ''
FROM generate_series(%(first)s, %(last)s) AS g
"""

PROVIDER_CALLS_SQL = """
INSERT INTO providers_providercall (
    provider, merchant_account, operation, direction, record_type, record_id, client_reference, method, url,
    request_headers, request_body, response_status, response_body, latency_ms, outcome, upstream_code, error,
    created_at, finished_at)
SELECT
    op.providers[1 + g %% 8], 'default', op.operations[1 + g %% 8], op.directions[1 + g %% 8], 'orders.RechargeOrder', g::text,
    'R' || lpad(g::text, 11, '0'), 'POST', 'https://upstream.example/api', '{}',
    '{"bizCode": "' || g || '", "sign": "***"}', 200, '{"code": 0, "message": "ok", "data": {"orderNo": "' || g || '"}}',
    20 + g %% 400,
    CASE WHEN g %% 100 < 90 THEN 'succeeded' WHEN g %% 100 < 97 THEN 'failed' ELSE 'unknown' END,
    CASE WHEN g %% 100 < 90 THEN '0' ELSE 'E' || (g %% 7) END, '',
    now() - (%(total)s - g) * interval '30 seconds', now() - (%(total)s - g) * interval '30 seconds'
FROM generate_series(%(first)s, %(last)s) AS g
CROSS JOIN (SELECT
    ARRAY['exchange', 'exchange', 'exchange', 'bst17', 'bst17', 'bst17', 'best_gerp', 'wdt'] AS providers,
    ARRAY['VIPCharge', 'info', 'callback', 'ecoupon', 'getCardInfo', 'callback', 'recharge_refund',
          'createGxRechargeOrder'] AS operations,
    ARRAY['outbound', 'outbound', 'callback', 'outbound', 'outbound', 'callback', 'outbound', 'outbound']
        AS directions) AS op
"""


def load_rows(first: int, last: int, total: int, users) -> None:
    """Rows first..last of `total`: the newest row is created now, one row every 30 seconds before it.

    The history triggers are switched off for the load (by the tables' owner: the application
    role may not), and each chunk's insert events are written in one INSERT ... SELECT instead,
    with the context and the time the trigger would have given them: the same rows, many times
    faster.
    """
    from distributors.models import FundTransaction
    from orders.models import RechargeOrder

    tables = [model._meta.db_table for model in (RechargeOrder, FundTransaction)]
    with as_owner(), connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
        for start in range(first, last + 1, LOAD_CHUNK):
            end = min(start + LOAD_CHUNK - 1, last)
            user = users[(start // LOAD_CHUNK) % len(users)]
            params = {"first": start, "last": end, "total": total, "user": user.pk, "distributors": DISTRIBUTORS}
            # Each chunk is one "import" by one clerk, as the audit log would record it.
            cursor.execute(
                "INSERT INTO pghistory_context (id, created_at, updated_at, metadata) "
                "VALUES (gen_random_uuid(), now(), now(), %s) RETURNING id",
                [json.dumps({"user": user.pk, "source": "import"})],
            )
            context_id = cursor.fetchone()[0]
            for model, sql in ((RechargeOrder, ORDERS_SQL), (FundTransaction, FUND_TRANSACTIONS_SQL)):
                cursor.execute("SELECT COALESCE(MAX(id), 0) FROM " + model._meta.db_table)
                after = cursor.fetchone()[0]
                cursor.execute(sql, params)
                write_insert_events(cursor, model, after, context_id)
            cursor.execute(PROVIDER_CALLS_SQL, params)
        for table in tables:
            cursor.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')
        # What autovacuum does to a table soon after a big load: statistics and the visibility map.
        cursor.execute("VACUUM ANALYZE")


def write_insert_events(cursor, model, after_id: int, context_id) -> None:
    event_model = model.pgh_event_models["insert"]
    columns = [f.column for f in event_model._meta.concrete_fields if not f.column.startswith("pgh_")]
    listed = ", ".join(f'"{column}"' for column in columns)
    cursor.execute(
        f'INSERT INTO "{event_model._meta.db_table}" (pgh_created_at, pgh_label, pgh_obj_id, pgh_context_id, {listed}) '
        f'SELECT created_at, %s, id, %s, {listed} FROM "{model._meta.db_table}" WHERE id > %s ORDER BY id',
        ["insert", context_id, after_id],
    )


# --- measuring ---------------------------------------------------------------------------------


def superuser_client():
    from django.contrib.auth import get_user_model

    from tests.factories import verify_second_factor

    user = get_user_model().objects.create_superuser("bench-admin", password="bench-password-0123")
    client = Client()
    client.force_login(user)
    verify_second_factor(client, user)
    return client


def cases(rows: int) -> list[tuple[str, str, dict]]:
    from orders.models import RechargeOrder

    deep_page = min(DEEP_PAGE, max(1, rows // PER_PAGE))
    order = RechargeOrder.objects.order_by("id")[rows // 2]
    page = f"page {DEEP_PAGE}"
    return [
        ("orders", "plain", {}),
        ("orders", "filtered", {"status__exact": "manual_review", "kind__exact": "direct_charge"}),
        ("orders", "searched", {"q": order.client_reference}),
        ("orders", page, {"p": deep_page}),
        ("fund transactions", "plain", {}),
        ("fund transactions", "filtered", {"status__exact": "pending_approval"}),
        ("fund transactions", "searched", {"q": f"V{rows // 2:09d}"}),
        ("fund transactions", page, {"p": deep_page}),
        ("provider calls", "plain", {}),
        ("provider calls", "filtered", {"outcome__exact": "unknown"}),
        ("provider calls", "searched", {"q": f"R{rows // 2:011d}"}),
        ("provider calls", page, {"p": deep_page}),
        ("history", "plain", {}),
        ("history", "filtered", {"pgh_label": "insert", "source": "import"}),
        ("history", "per object", {"method": "tracks", "obj": f"orders.rechargeorder:{order.pk}"}),
        ("history", "by distributor", {"distributor": "D0007"}),
        ("history", "searched", {"q": order.client_reference}),
        ("history", "date range", {"pgh_created_at__from": "2000-01-01", "source": "import"}),
        ("history", page, {"p": deep_page}),
    ]


URLS = {
    "orders": "/admin/orders/rechargeorder/",
    "fund transactions": "/admin/distributors/fundtransaction/",
    "provider calls": "/admin/providers/providercall/",
    "history": "/admin/pghistory/events/",
}


@contextmanager
def rendering_times():
    """The time each response spends rendering its template, in ms, appended to the list yielded."""
    spent: list[float] = []
    rendered_content = SimpleTemplateResponse.rendered_content

    def timed(response):
        started = time.perf_counter()
        try:
            return rendered_content.fget(response)
        finally:
            spent.append((time.perf_counter() - started) * 1000)

    SimpleTemplateResponse.rendered_content = property(timed)
    try:
        yield spent
    finally:
        SimpleTemplateResponse.rendered_content = rendered_content


def measure(client, url: str, params: dict) -> tuple[float, float, int, int, float, float]:
    """p50 and p95 in ms, the query count of one request, the rows it showed, its time in SQL (ms)
    and the median time the requests spent rendering the page (ms)."""
    response = client.get(url, params)  # warm-up, and the check that the page is what we think
    if response.status_code != 200:
        raise RuntimeError(f"{url} {params}: HTTP {response.status_code} {response.get('Location', '')}")
    shown = len(response.context["cl"].result_list)
    timings = []
    with rendering_times() as rendering:
        for _ in range(RUNS):
            started = time.perf_counter()
            client.get(url, params)
            timings.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connections["default"]) as main, CaptureQueriesContext(connections["call_log"]) as log:
        client.get(url, params)
    timings.sort()
    p95 = timings[max(0, round(0.95 * len(timings)) - 1)]
    sql_ms = sum(float(query["time"]) for query in [*main.captured_queries, *log.captured_queries]) * 1000
    return statistics.median(timings), p95, len(main) + len(log), shown, sql_ms, statistics.median(rendering)


def main() -> None:
    small = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    large = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    warnings.filterwarnings("ignore", message="No directory at")
    setup_test_environment()  # testserver is an allowed host; responses carry their template context
    with bench_databases():
        users = load_fixed_rows()
        client = superuser_client()
        results = {}
        loaded = 0
        for rows in (small, large):
            started = time.perf_counter()
            load_rows(loaded + 1, rows, rows, users)
            loaded = rows
            print(f"loaded {rows:,} orders, fund transactions and provider calls "
                  f"in {time.perf_counter() - started:.0f} s", flush=True)
            for name, case, params in cases(rows):
                results[(name, case, rows)] = measure(client, URLS[name], params)
                p50, p95, queries, shown, sql_ms, render_ms = results[(name, case, rows)]
                print(f"  {name:18} {case:10} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  {queries:2d} queries"
                      f" ({sql_ms:5.1f} ms in SQL)  rendering {render_ms:5.1f} ms  {shown:3d} rows", flush=True)
        report(results, small, large)


def report(results, small: int, large: int) -> None:
    """One line per list and case: latency at both sizes, SQL time in one request, rendering, query counts."""
    print()
    print(f"{'list':18} {'case':10} {'p50 / p95 at ' + format(small, ','):>22} {'p50 / p95 at ' + format(large, ','):>24}"
          f" {'SQL ms':>13} {'render ms':>13} {'queries':>8}  verdict")
    worst = 0.0
    for name, case, _params in cases(small):
        at_small, at_large = results[(name, case, small)], results[(name, case, large)]
        worst = max(worst, at_large[1], at_small[1])
        fast = at_large[1] <= TARGET_MS and at_small[1] <= TARGET_MS
        verdict = ("ok" if fast else "slow") + ("" if at_small[2] == at_large[2] else ", query count grows")
        print(f"{name:18} {case:10} {at_small[0]:8.1f} / {at_small[1]:6.1f} ms {at_large[0]:10.1f} / {at_large[1]:6.1f} ms"
              f" {at_small[4]:5.1f} / {at_large[4]:5.1f} {at_small[5]:5.1f} / {at_large[5]:5.1f}"
              f" {at_small[2]:3d} / {at_large[2]:2d}  {verdict}")
    print(f"\nworst p95: {worst:.1f} ms (target {TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    main()
