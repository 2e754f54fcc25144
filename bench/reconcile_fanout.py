"""Reconciliation of orders left UNKNOWN, through the sandbox, on a throwaway database. Prints its numbers.

    .venv/bin/python bench/reconcile_fanout.py [orders]        (default 10000)

1. Setup (not timed): `orders` direct charges placed (price held) and sent through VIPCharge by
   4 processes forked from this one while the sandbox carries out every charge but answers each with an unreadable
   body, so every order is UNKNOWN; the platform finishes them at once and their status
   callbacks are lost (nothing listens at the callback URL). Then a minute passes for them: their
   next query is made due. Their submission jobs, whose work was done here, are dropped.
2. The sandbox's order/info capacity: N signed order/info calls about those orders straight at it
   from as many client processes as there are workers (4), doing nothing else (no database, no
   job queue; signed, sent and read through the client's own preparation and transport, as a
   query job does), as requests per second; with the sandbox's own CPU per call.
3. The back office: one `orders.reconcile` job is deferred, and 4 `manage.py procrastinate worker`
   processes run it (it defers one query job per group of ORDER_QUERY_GROUP_SIZE orders due) and
   the query jobs, which settle the orders. Prints orders per second (all workers up to the last
   final), the CPU each process used per order, and checks that every order was queried once,
   how many groups had a second query job (deferred while the first ran: it waits for the first,
   by its lock, and finds nothing due), and that the ledger is clean. The workers' own periodic
   reconciliations run meanwhile, as in production.
4. The capacity again, after part 3, and the ratio against the mean of both (the machine's speed
   drifts: see bench/orders_throughput.py, whose helpers this uses).

Environment: BENCH_WORKERS (4), BENCH_CONCURRENCY (jobs per worker: 1, as `scripts/start` runs a
worker), BENCH_CAPACITY_CALLS (2000).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench import orders_throughput  # noqa: E402 - sets up Django as every bench here does
from bench.orders_throughput import (  # noqa: E402
    CAPACITY_CALLS,
    CONCURRENCY,
    WORKERS,
    StealMeter,
    cpu_snapshot,
    direct_charges,
    free_port,
    on_throwaway_database,
    process_environment,
    run_workers_until_final,
    start_sandbox,
)

# isort: split
# Django's own modules only after the bench module above has set Django up.
from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402
from django.utils import timezone  # noqa: E402

SETUP_PROCESSES = 4
# As many clients as the back office has workers: capacity to the same number of concurrent callers.
CAPACITY_CLIENTS = WORKERS


def finishing_stats(exchange) -> dict:
    """How far the platform got: its orders, those still processing, the callbacks it tried."""
    from providers.exchange.client import ORDER_STATUS_PROCESSING

    return {
        "orders": len(exchange.orders),
        "processing": sum(1 for order in exchange.orders.values() if order["status"] == ORDER_STATUS_PROCESSING),
        "callbacks_tried": len(exchange.callback_attempts),
    }


# The sandbox finishes every charge at once and sends each callback once (to nobody).
sandbox_process = functools.partial(orders_throughput.sandbox_process, callback_delay=0.0, callback_retry_delays=(),
                                    stats=finishing_stats)


def _capacity_client(references: list[str], start, answers) -> None:
    """One capacity client (a forked process, as each worker is one): its calls once `start` is set, then its clock."""
    from providers.exchange.client import ORDER_INFO_PATH, ExchangeClient, is_success_status

    client = ExchangeClient()

    def one(reference: str) -> bool:
        payload = {"merchantId": client.config.merchant_id, "businessId": client.config.business_id,
                   "bizCode": reference}
        # Signed, sent and read as a query job does (the client's own preparation and transport),
        # only without the call log and the order around it.
        answer = client._send(client._prepare("info", ORDER_INFO_PATH, payload))
        return answer.status_code == 200 and is_success_status(answer.json()["status"])

    ok = one(references[0])  # warm up (first connection, the key loaded)
    answers.put(("ready", ok))
    start.wait()
    started = time.perf_counter()
    failed = sum(1 for reference in references if not one(reference))
    answers.put((started, time.perf_counter(), failed))


def info_capacity(references: list[str], round_name: str, sandbox_pid: int) -> float:
    """order/info calls per second the sandbox answers to CAPACITY_CLIENTS clients doing nothing else.

    Each client is a process of its own, like each worker: clients that are threads of one process
    share its interpreter lock, and on this machine 4 such threads asked about a quarter less than
    4 processes (365 against 475 calls/s), which flattered the back office.
    """
    context = multiprocessing.get_context("fork")
    start, answers = context.Event(), context.Queue()
    asked = [references[n % len(references)] for n in range(CAPACITY_CALLS)]
    connections.close_all()  # nothing of ours crosses the fork
    clients = [context.Process(target=_capacity_client, args=(asked[n::CAPACITY_CLIENTS], start, answers), daemon=True)
               for n in range(CAPACITY_CLIENTS)]
    for client in clients:
        client.start()
    assert all(answers.get(timeout=60)[1] for _ in clients), f"a warm-up call ({round_name}) failed"
    steal = StealMeter()
    sandbox_cpu = cpu_snapshot({"sandbox": [sandbox_pid]})["sandbox"]
    start.set()
    clocks = [answers.get(timeout=600) for _ in clients]
    sandbox_cpu = cpu_snapshot({"sandbox": [sandbox_pid]})["sandbox"] - sandbox_cpu
    for client in clients:
        client.join()
    elapsed = max(end for _, end, _ in clocks) - min(begun for begun, _, _ in clocks)
    failed = sum(failed for _, _, failed in clocks)
    assert not failed, f"{failed} capacity calls ({round_name}) failed"
    rate = len(asked) / elapsed
    print(f"   {rate:,.1f} order/info calls/s; the sandbox busy {sandbox_cpu / elapsed:.0%} of a core, "
          f"{sandbox_cpu / len(asked) * 1000:.2f} ms per call{steal.report()}", flush=True)
    return rate


def _submit(chunk: list[int]) -> None:
    from orders.services import orders_submit

    orders_submit(order_ids=chunk)


def leave_unknown(ids: list[int], sandbox_url: str) -> None:
    """Send the placed orders as workers would, from processes forked from this one, while every answer is lost."""
    import requests

    requests.post(f"{sandbox_url}/_faults", json={"vendor": "exchange", "kind": "malformed",
                                                  "operation": "VIPCharge", "times": len(ids)}, timeout=10)
    connections.close_all()  # nothing of ours crosses the fork
    with multiprocessing.get_context("fork").Pool(SETUP_PROCESSES) as pool:
        pool.map(_submit, [ids[start : start + 25] for start in range(0, len(ids), 25)])


def run(total: int) -> None:
    from cryptography.fernet import Fernet
    from django.db.models import Count
    from procrastinate.contrib.django.models import ProcrastinateJob

    from config.provider_settings import provider_accounts
    from distributors.services import ledger_balance_check
    from orders.models import FINAL_ORDER_STATUSES, OrderStatus, RechargeOrder
    from orders.services import orders_place
    from orders.tasks import reconcile
    from providers.models import ProviderCall
    from providers.sandbox.vendors import demo_environment

    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    # The callback URL is a port nobody listens on: every callback is lost.
    provider_environment = demo_environment(sandbox_url, f"http://127.0.0.1:{free_port()}")
    settings.PROVIDERS = provider_accounts(provider_environment)
    if not settings.CARD_PIN_KEYS:
        settings.CARD_PIN_KEYS = [Fernet.generate_key().decode()]

    sandbox, control = start_sandbox(sandbox_process, sandbox_port)

    print(f"1. placing {total:,} orders and sending them with every answer lost ...", flush=True)
    started = time.perf_counter()
    clerk, ids = direct_charges(total)
    for start in range(0, total, 500):
        assert not orders_place(ids=ids[start : start + 500], actor=clerk).refused
    leave_unknown(ids, sandbox_url)
    ProcrastinateJob.objects.filter(task_name="orders.submit_orders").delete()  # their work is done
    counts = dict(RechargeOrder.objects.values_list("status").annotate(n=Count("id")).order_by())
    assert counts == {OrderStatus.UNKNOWN: total}, counts
    deadline = time.monotonic() + 300
    while True:
        control.send("stats")
        stats = control.recv()
        if (stats["processing"] == 0 and stats["callbacks_tried"] >= total) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert stats["orders"] == total and stats["processing"] == 0, stats
    held = total * Decimal("22.00")
    due = RechargeOrder.objects.update(next_query_at=timezone.now())  # a minute later
    print(f"   {due:,} orders UNKNOWN ({held} held), finished upstream, callbacks lost, due for a query "
          f"(setup {time.perf_counter() - started:.1f} s)", flush=True)

    references = list(RechargeOrder.objects.values_list("client_reference", flat=True))
    print(f"2. sandbox order/info capacity: {CAPACITY_CALLS:,} calls from {CAPACITY_CLIENTS} client processes "
          "(measured again after part 3) ...", flush=True)
    capacities = [info_capacity(references, "before", sandbox.pid)]

    reconcile.defer(timestamp=int(time.time()))
    print(f"3. one reconciliation job, {WORKERS} workers x {CONCURRENCY} jobs (the clock starts when they are all up) ...",
          flush=True)
    env = process_environment(provider_environment)
    with open(BASE_DIR / "var" / "bench-reconcile.log", "wb") as log:
        measured = run_workers_until_final(env, log, {"sandbox": [sandbox.pid]}, total)
    print("4. sandbox order/info capacity again ...", flush=True)
    capacities.append(info_capacity(references, "after", sandbox.pid))
    capacity = statistics.mean(capacities)
    control.send("stop")
    control.recv()

    counts = dict(RechargeOrder.objects.values_list("status").annotate(n=Count("id")).order_by())
    finished = list(RechargeOrder.objects.filter(status__in=FINAL_ORDER_STATUSES).values_list("finished_at", flat=True))
    throughput = len(finished) / (max(finished) - measured.started_at).total_seconds() if finished else 0.0
    queries = dict(ProviderCall.objects.filter(operation="info").values_list("record_id").annotate(n=Count("id"))
                   .order_by())
    queried_twice = sum(1 for n in queries.values() if n > 1)
    jobs = ProcrastinateJob.objects.filter(task_name="orders.query_orders")
    jobs_per_group = dict(jobs.values_list("lock").annotate(n=Count("id")).order_by())
    runs = list(ProcrastinateJob.objects.filter(task_name="orders.reconcile").values_list("status", flat=True))
    check = ledger_balance_check(triggered_by="bench")
    cpu_used, elapsed = measured.cpu_used, measured.elapsed

    print()
    print(f"sandbox order/info capacity alone ({CAPACITY_CLIENTS} client processes): {capacity:8.1f} calls/s "
          f"(mean of {' before and '.join(f'{rate:.1f}' for rate in capacities)} after)")
    print(f"back office, {WORKERS} workers x {CONCURRENCY} jobs:  {throughput:8.1f} orders/s UNKNOWN -> final "
          f"({len(finished):,} final of {total:,}, {elapsed:.1f} s from all workers up{measured.steal})"
          f"  -> {throughput / capacity:.0%} of the sandbox's order/info capacity (target: at least 50%)")
    if finished:
        per_order = "  ".join(f"{name} {seconds / len(finished) * 1000:.2f} ms" for name, seconds in cpu_used.items())
        print(f"CPU per final order: {per_order}"
              f"  = {sum(cpu_used.values()) / len(finished) * 1000:.2f} ms in all; machine busy "
              f"{sum(cpu_used.values()) / elapsed / (os.cpu_count() or 1):.0%} of {os.cpu_count()} cores")
        ours = cpu_used["workers"] + cpu_used["PostgreSQL"]
        print(f"back office CPU per order (workers, PostgreSQL): {ours / len(finished) * 1000:.2f} ms, "
              f"{ours / cpu_used['sandbox']:.2f} times the sandbox's")
    print(f"statuses: {', '.join(f'{status}={n:,}' for status, n in sorted(counts.items()))}")
    print(f"orders queried: {len(queries):,}; queried twice or more: {queried_twice}; query jobs: {jobs.count():,} "
          f"(groups of {settings.ORDER_QUERY_GROUP_SIZE}), groups with two or more: "
          f"{sum(1 for n in jobs_per_group.values() if n > 1)}; "
          f"reconciliation runs: {len(runs)} ({', '.join(sorted(set(runs)))})")
    print(f"ledger check: {check.accounts_checked} accounts, {len(check.mismatches)} mismatches")
    if len(finished) < total:
        print("some orders are not final: see var/bench-reconcile.log")


def main() -> None:
    on_throwaway_database(run, 10_000)


if __name__ == "__main__":
    main()
