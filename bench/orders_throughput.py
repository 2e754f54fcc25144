"""Direct-charge throughput through the sandbox, on a throwaway database. Prints its numbers.

    .venv/bin/python bench/orders_throughput.py [orders]        (default 10000)

1. The sandbox's own capacity: N signed VIPCharge calls straight at it from 4 threads (no
   database, no job queue; signed and sent through the client's own transport session), as
   requests per second. Each call's status callback is delivered once, to a receiver that only
   answers SUCCESS, so the sandbox does per call what it does per order in part 2.
2. The back office: `orders` direct charges placed (price held, job deferred) from this process
   while 4 `manage.py procrastinate worker` processes submit them through VIPCharge; the final
   status arrives by the platform's signed callback, received by the back office served with
   gunicorn. Prints orders per second (all workers up to last final: their start-up is not
   counted), p50/p95 of queued -> final, the CPU each process used per order, and checks that
   every bizCode reached the sandbox exactly once.
3. The sandbox's capacity again: on a shared virtual machine the CPU left to us drifts from minute
   to minute (the share taken by the hypervisor is printed beside each rate), so the ratio is
   taken against the mean of the measurements before and after part 2.

The sandbox runs in a child process (forked, so it shares the generated credentials) and reports
its counters through a pipe. The database is created and dropped here (Django's test-database
machinery), so the development data is never touched.

Environment: BENCH_WORKERS (4), BENCH_CONCURRENCY (jobs per worker: 1, as `scripts/start` runs a
worker), BENCH_CAPACITY_CALLS (2000).
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
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

from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.databases import bench_databases  # noqa: E402

WORKERS = int(os.environ.get("BENCH_WORKERS", 4))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 1))
CAPACITY_CALLS = int(os.environ.get("BENCH_CAPACITY_CALLS", 2000))
CAPACITY_THREADS = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the sandbox, in a child process ---------------------------------------------------------


def charge_stats(exchange) -> dict:
    """What part 2 checks: every bizCode the sandbox received, and the callbacks delivered."""
    return {
        "charge_requests": dict(exchange.charge_requests),
        "callbacks_delivered": [attempt["bizCode"] for attempt in exchange.callback_attempts if attempt["delivered"]],
    }


def sandbox_process(port: int, control, *, callback_delay: float = 0.05,
                    callback_retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0), stats=charge_stats) -> None:
    """The sandbox; answers "stats" on the pipe with stats(its redemption platform), read under its lock."""
    from providers.sandbox.server import serve

    httpd = serve("127.0.0.1", port)
    exchange = httpd.sandbox.vendor("exchange")
    exchange.callback_delay = callback_delay
    exchange.callback_retry_delays = callback_retry_delays
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    control.send("ready")
    while True:
        command = control.recv()
        if command == "stats":
            with exchange.lock:
                answer = stats(exchange)
            control.send(answer)
        elif command == "stop":
            httpd.shutdown()
            control.send("stopped")
            return


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


# --- 1. capacity ----------------------------------------------------------------------------------


def callback_receiver_process(port: int) -> None:
    """Answers every callback SUCCESS and does nothing else: the least a receiver can do."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - name from the standard library
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"SUCCESS")

        def log_message(self, format, *args) -> None:  # noqa: A002
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def sandbox_capacity(calls: int, receiver: str, round_name: str) -> float:
    """VIPCharge calls per second the sandbox answers, with nothing around them but what it must do.

    Each call is signed and sent like ours (the client's own preparation and transport session,
    no database, no job queue), and its status callback is delivered once to a receiver that only
    answers SUCCESS: the sandbox does per call exactly the work it does for an order in part 2
    (a callback sent to a closed port would be retried and re-signed four times instead).
    """
    from providers.exchange.client import VIP_CHARGE_PATH, ExchangeClient, is_success_status

    def one(index: int) -> bool:
        client = clients.setdefault(threading.get_ident(), ExchangeClient())
        payload = {
            "merchantId": client.config.merchant_id, "businessId": client.config.business_id,
            "productCode": "87103", "account": f"1370000{index:04d}", "bizCode": f"CAP{round_name}{index:08d}",
            "callbackUrl": receiver,
        }
        prepared = client._prepare("VIPCharge", VIP_CHARGE_PATH, payload)
        answer = client.session.post(prepared.url, data=prepared.body, headers=prepared.headers, timeout=30)
        # Business errors come with HTTP 200 too, and cost the sandbox less than a charge.
        return answer.status_code == 200 and is_success_status(answer.json()["status"])

    clients: dict[int, ExchangeClient] = {}
    one(-1)  # warm up (imports, first connection)
    started = time.perf_counter()
    with ThreadPoolExecutor(CAPACITY_THREADS) as pool:
        answers = list(pool.map(one, range(calls)))
    elapsed = time.perf_counter() - started
    assert all(answers), f"{answers.count(False)} capacity calls failed"
    return calls / elapsed


def capacity_round(round_name: str) -> float:
    """One measurement of the sandbox's capacity, with its own callback receiver and its own bizCodes."""
    connections.close_all()  # nothing of ours crosses the fork
    receiver_port = free_port()
    receiver = multiprocessing.get_context("fork").Process(target=callback_receiver_process, args=(receiver_port,),
                                                           daemon=True)
    receiver.start()
    try:
        wait_for_port(receiver_port)
        steal = StealMeter()
        capacity = sandbox_capacity(CAPACITY_CALLS, f"http://127.0.0.1:{receiver_port}/callbacks/", round_name)
        print(f"   {capacity:,.1f} calls/s{steal.report()}", flush=True)
        time.sleep(2)  # let the capacity calls' last callbacks finish
    finally:
        receiver.terminate()
        receiver.join()
    return capacity


class StealMeter:
    """The share of the machine's CPU time the hypervisor gave to other machines since this was made,
    and how busy the machine was meanwhile, whoever kept it busy.

    On a shared virtual machine it varies from minute to minute, and with it every rate measured
    here: it is printed beside each rate, so that runs can be compared. The machine may be shared
    inside too (other checkouts running their own benches and tests): how busy it was, beside the
    CPU our own processes used, says how much of it others took.
    """

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int, int]:
        try:
            with open("/proc/stat") as stat:
                ticks = [int(value) for value in stat.readline().split()[1:]]
        except OSError:
            return 0, 0, 0
        return (ticks[7] if len(ticks) > 7 else 0), ticks[3] + ticks[4], sum(ticks[:8])

    def report(self) -> str:
        steal, idle, total = (now - then for now, then in zip(self._read(), self.start, strict=True))
        if not total:
            return ""
        return (f" (machine busy meanwhile, all its processes: {1 - idle / total:.0%}; "
                f"CPU stolen by the hypervisor: {steal / total:.0%})")


# --- 2. the back office ---------------------------------------------------------------------------


def database_url() -> str:
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    if db["HOST"].startswith("/"):
        return f"postgres://{user}{password}@/{db['NAME']}?host={db['HOST']}"
    return f"postgres://{user}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def process_environment(provider_environment: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **provider_environment,
        "DATABASE_URL": database_url(),
        "DATABASE_OWNER_URL": "",  # a worker never migrates: the application role only
        "CARD_PIN_KEYS": ",".join(settings.CARD_PIN_KEYS),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CONN_MAX_AGE": "60",  # as deployed: a connection per worker thread, not per request
        "LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def jobs_held_back():
    """No job can be fetched while inside: the job table is locked on a connection of its own."""
    import psycopg

    with psycopg.connect(database_url()) as holder:
        holder.execute("LOCK TABLE procrastinate_jobs IN EXCLUSIVE MODE")
        yield
    # leaving the block commits, which releases the lock


def wait_for_workers(count: int, timeout: float = 120) -> None:
    """Until `count` workers have registered (they do so just before fetching their first job)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM procrastinate_workers")
            if cursor.fetchone()[0] >= count:
                return
            time.sleep(0.05)
    raise RuntimeError(f"{count} workers did not start within {timeout} s")


def cpu_seconds(root) -> float:
    """CPU time of a process and all its descendants, live or already reaped."""
    import psutil

    def one(process) -> float:
        times = process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    try:
        total = one(root)
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += one(child)
        return total
    except psutil.Error:
        return 0.0


def database_server_pid() -> int | None:
    """The PostgreSQL server of the bench's database, if it runs on this machine: the parent of our backend.

    Only that one: on a machine shared with other checkouts, their servers (and the system's) run
    beside it, and counting every postmaster here put their work on our orders.
    """
    import psutil

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(backend)
        if process.name() == "postgres":
            return process.ppid()
    return None  # a server elsewhere: its CPU is not measured


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of process trees."""
    import psutil

    return {name: sum(cpu_seconds(psutil.Process(pid)) for pid in pids) for name, pids in groups.items()}


def start_sandbox(target, port: int):
    """The sandbox process running target(port, pipe end), once it said "ready": (process, this end of the pipe)."""
    connections.close_all()  # nothing of ours crosses the fork
    control, child_end = multiprocessing.Pipe()
    sandbox = multiprocessing.get_context("fork").Process(target=target, args=(port, child_end), daemon=True)
    sandbox.start()
    assert control.recv() == "ready"
    return sandbox, control


def direct_charges(total: int):
    """A clerk and `total` draft direct charges of one funded distributor: (the clerk, the orders' ids)."""
    from django.contrib.auth import get_user_model

    from distributors.models import AccountKind, Distributor, EntryKind
    from distributors.services import Posting, distributor_open_accounts, ledger_post
    from orders.models import OrderKind, Product
    from orders.services import order_create
    from providers.models import Provider

    clerk = get_user_model().objects.create_user("bench-clerk", password="bench-password-0123")
    distributor = Distributor.objects.create(code="BENCH1", name="压测分销商")
    distributor_open_accounts(distributor=distributor)
    ledger_post(distributor=distributor, postings=[Posting(kind=AccountKind.PREPAID, amount=Decimal(total * 30))],
                entry_kind=EntryKind.RECHARGE)
    product = Product.objects.create(provider=Provider.EXCHANGE, code="87103", name="视频会员月卡",
                                     kind=OrderKind.DIRECT_CHARGE, sale_price=Decimal("22.00"))
    ids = [
        order_create(distributor=distributor, product=product, actor=clerk, target_account=f"1380000{n:05d}").pk
        for n in range(total)
    ]
    return clerk, ids


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class WorkersRun:
    """What `run_workers_until_final` measured: when the workers were all up, for how long, their CPU."""

    started_at: datetime.datetime
    elapsed: float
    cpu_used: dict[str, float]  # seconds per group of processes, "workers", "PostgreSQL" (ours) and "this process" included
    steal: str


def run_workers_until_final(env: dict[str, str], log, cpu_groups: dict[str, list[int]], total: int) -> WorkersRun:
    """Start WORKERS workers on the orders queue, wait until no order is pending, stop them.

    The clock starts when every worker is up and asking for work, not while their Python and
    Django start: until then the job table is locked against fetching (not against reading).
    """
    from orders.models import FINAL_ORDER_STATUSES, RechargeOrder

    workers = []
    try:
        with jobs_held_back():
            workers = [
                subprocess.Popen(
                    [sys.executable, "manage.py", "procrastinate", "worker", "--queues", "orders",
                     "--concurrency", str(CONCURRENCY)],
                    cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                )
                for _ in range(WORKERS)
            ]
            wait_for_workers(WORKERS)
            server = database_server_pid()
            cpu_groups = {"workers": [worker.pid for worker in workers], **cpu_groups,
                          "PostgreSQL": [server] if server else []}
            cpu_before = cpu_snapshot(cpu_groups)
            own_cpu_before = time.process_time()
            workers_started = timezone.now()
            started = time.perf_counter()
            steal = StealMeter()
        deadline = time.monotonic() + max(600, total / 5)
        while True:
            pending = RechargeOrder.objects.exclude(status__in=FINAL_ORDER_STATUSES).count()
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_snapshot(cpu_groups)
        own_cpu = time.process_time() - own_cpu_before
        run_steal = steal.report()
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    cpu_used = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    cpu_used["this process"] = own_cpu
    return WorkersRun(started_at=workers_started, elapsed=elapsed, cpu_used=cpu_used, steal=run_steal)


def on_throwaway_database(run, default_total: int) -> None:
    """run(total) on test databases created and dropped here, total from the command line."""
    total = int(sys.argv[1]) if len(sys.argv) > 1 else default_total
    with bench_databases():
        run(total)


def run(total: int) -> None:
    from cryptography.fernet import Fernet
    from django.db.models import Count

    from config.provider_settings import provider_accounts
    from distributors.services import ledger_balance_check
    from orders.models import FINAL_ORDER_STATUSES, OrderStatus, RechargeOrder
    from orders.services import orders_place
    from providers.models import ProviderCall
    from providers.sandbox.vendors import demo_environment

    sandbox_port, web_port = free_port(), free_port()
    provider_environment = demo_environment(f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{web_port}")
    settings.PROVIDERS = provider_accounts(provider_environment)
    if not settings.CARD_PIN_KEYS:
        settings.CARD_PIN_KEYS = [Fernet.generate_key().decode()]

    sandbox, control = start_sandbox(sandbox_process, sandbox_port)

    print(f"1. sandbox capacity: {CAPACITY_CALLS:,} VIPCharge calls from {CAPACITY_THREADS} threads "
          "(measured again after part 2) ...", flush=True)
    capacities = [capacity_round("A")]

    print(f"2. creating and placing {total:,} orders ...", flush=True)
    clerk, ids = direct_charges(total)

    # Everything is placed (price held, job deferred) before the workers start, so the workers'
    # rate is measured, not this one process's rate of placing.
    started = time.perf_counter()
    for start in range(0, total, 500):
        result = orders_place(ids=ids[start : start + 500], actor=clerk)
        assert not result.refused, list(result.refused.items())[:3]
    placed_seconds = time.perf_counter() - started
    print(f"   placed in {placed_seconds:.1f} s; starting gunicorn and {WORKERS} workers x {CONCURRENCY} jobs "
          "(the clock starts when they are all up) ...",
          flush=True)

    env = process_environment(provider_environment)
    log = open(BASE_DIR / "var" / "bench-orders.log", "wb")  # noqa: SIM115 - closed at the end
    # --preload: the application is loaded once, before the port opens, so gunicorn is ready to
    # serve when it accepts (its workers' start-up is not counted in the measurement).
    # One process of 4 threads: on these 2 cores, shared with 4 workers, the sandbox and
    # PostgreSQL, the callbacks need well under a core, and a second process would only add its
    # own connections and context switches, more CPU per callback for no more throughput.
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{web_port}",
         "--workers", "1", "--threads", "4", "--log-level", "warning", "--preload"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(web_port)
        measured = run_workers_until_final(env, log, {"web server": [web.pid], "sandbox": [sandbox.pid]}, total)
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(30)
        except subprocess.TimeoutExpired:
            web.kill()
        log.close()
    workers_started, elapsed, cpu_used, run_steal = measured.started_at, measured.elapsed, measured.cpu_used, measured.steal
    print("3. sandbox capacity again, the machine's conditions may have changed meanwhile ...", flush=True)
    capacities.append(capacity_round("B"))
    capacity = statistics.mean(capacities)
    control.send("stats")
    stats = control.recv()
    control.send("stop")
    control.recv()

    counts = dict(RechargeOrder.objects.values_list("status").annotate(n=Count("id")).order_by())
    rows = list(RechargeOrder.objects.filter(status__in=FINAL_ORDER_STATUSES)
                .values_list("queued_at", "submitted_at", "finished_at"))
    to_final = [(finished - queued).total_seconds() for queued, _submitted, finished in rows]
    sent_to_final = [(finished - submitted).total_seconds() for _queued, submitted, finished in rows]
    first_sent = min(submitted for _q, submitted, _f in rows)
    last_final = max(finished for _q, _s, finished in rows)
    throughput = len(rows) / (last_final - workers_started).total_seconds()
    sending = len(rows) / (last_final - first_sent).total_seconds()
    references = set(RechargeOrder.objects.values_list("client_reference", flat=True))
    received = {code: n for code, n in stats["charge_requests"].items() if code in references}
    duplicates = sum(1 for n in received.values() if n > 1)
    never_sent = len(references) - len(received)
    callbacks_delivered = sum(1 for code in stats["callbacks_delivered"] if code in references)
    check = ledger_balance_check(triggered_by="bench")
    call_latencies = [ms / 1000 for ms in ProviderCall.objects.filter(operation="VIPCharge", latency_ms__isnull=False)
                      .values_list("latency_ms", flat=True)]

    print()
    print(f"sandbox capacity alone ({CAPACITY_THREADS} threads):   {capacity:8.1f} VIPCharge calls/s "
          f"(mean of {' before and '.join(f'{rate:.1f}' for rate in capacities)} after)")
    print(f"placing (hold + job, one process):    {total / placed_seconds:8.1f} orders/s")
    print(f"back office, {WORKERS} workers x {CONCURRENCY} jobs:     {throughput:8.1f} orders/s final "
          f"({len(rows):,} final of {total:,}, {elapsed:.1f} s from all workers up; "
          f"{sending:.1f}/s from the first send{run_steal})  -> {throughput / capacity:.0%} of the sandbox's "
          f"capacity (target: at least 50%)")
    print(f"queued -> final:     p50 {statistics.median(to_final):6.2f} s   p95 {percentile(to_final, 0.95):6.2f} s"
          f"   (all {total:,} were queued before the workers started: this is mostly the wait in the queue)")
    print(f"submitted -> final:  p50 {statistics.median(sent_to_final):6.2f} s   "
          f"p95 {percentile(sent_to_final, 0.95):6.2f} s")
    if call_latencies:
        print(f"VIPCharge call, sent -> answered: p50 {statistics.median(call_latencies):6.3f} s   "
              f"p95 {percentile(call_latencies, 0.95):6.3f} s")
    print(f"CPU per final order: {'  '.join(f'{name} {seconds / len(rows) * 1000:.2f} ms' for name, seconds in cpu_used.items())}"
          f"  = {sum(cpu_used.values()) / len(rows) * 1000:.2f} ms in all; machine busy "
          f"{sum(cpu_used.values()) / elapsed / (os.cpu_count() or 1):.0%} of {os.cpu_count()} cores")
    # The machine's speed drifts between runs, and the sandbox's code does not change: the back
    # office's CPU per order in units of the sandbox's is the figure to compare runs by.
    ours = cpu_used["workers"] + cpu_used["web server"] + cpu_used["PostgreSQL"]
    print(f"back office CPU per order (workers, web server, PostgreSQL): {ours / len(rows) * 1000:.2f} ms, "
          f"{ours / cpu_used['sandbox']:.2f} times the sandbox's")
    print(f"statuses: {', '.join(f'{status}={n:,}' for status, n in sorted(counts.items()))}")
    print(f"bizCodes received by the sandbox: {len(received):,}; sent twice or more: {duplicates}; "
          f"never sent: {never_sent}; callbacks delivered: {callbacks_delivered:,}")
    print(f"ledger check: {check.accounts_checked} accounts, {len(check.mismatches)} mismatches")
    if OrderStatus.UNKNOWN in counts or OrderStatus.MANUAL_REVIEW in counts:
        print("some orders are not final: see var/bench-orders.log")


def main() -> None:
    on_throwaway_database(run, 10_000)


if __name__ == "__main__":
    main()
