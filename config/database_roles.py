"""Two database roles: the owner migrates, the application owns nothing.

The ledger, the history, the PIN disclosures, the callback nonces and the call log are evidence.
Their triggers refuse UPDATE and DELETE, but a table's owner (or a superuser) can switch a trigger
off, TRUNCATE the table, or tell pgtrigger to ignore its trigger for a transaction. So the web
server and the worker connect as a role that owns nothing (DATABASE_URL) and may only read and
append to those tables; migrations, flushes and test databases use the owner's credentials
(DATABASE_OWNER_URL, or the embedded server's owner role), swapped in on the same connection
settings for as long as the command runs. Without DATABASE_OWNER_URL both are one role, and the
deployment check says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import connections, transaction

logger = logging.getLogger(__name__)

# The connection settings that differ between the two roles.
CREDENTIALS = ("USER", "PASSWORD", "HOST", "PORT")

# Read and appended to, never changed or removed (besides every history event model).
APPEND_ONLY_MODELS = (
    "distributors.LedgerEntry",
    "orders.PinDisclosure",
    "orders.CallbackNonce",
    "providers.ProviderCall",
)
# pghistory upserts a transaction's context row as its events are written: it is updated, but
# never removed.
NEVER_DELETED_MODELS = ("pghistory.Context",)


def owner_credentials() -> dict[str, str] | None:
    """The owner's USER, PASSWORD, HOST and PORT, or None when the application is the owner."""
    return settings.DATABASE_OWNER


def application_role() -> str:
    return settings.DATABASE_APPLICATION_ROLE


def _connections_sharing(alias: str) -> list:
    # A test mirror (the call log) shares its primary's settings dict: close it too.
    settings_dict = connections[alias].settings_dict
    return [connections[other] for other in connections if connections[other].settings_dict is settings_dict]


def use_credentials(alias: str, credentials: dict[str, str]) -> dict[str, str]:
    """Point `alias` (and the connections sharing its settings) at other credentials.

    The open connections are closed, so the next query connects anew; returns the previous
    credentials, to be given back the same way.
    """
    for connection in _connections_sharing(alias):
        connection.close()
    settings_dict = connections[alias].settings_dict
    previous = {key: settings_dict[key] for key in CREDENTIALS}
    settings_dict.update(credentials)
    return previous


@contextmanager
def as_owner(alias: str = "default") -> Iterator[None]:
    """Run the block connected as the owner role; a no-op where there is one role only."""
    owner = owner_credentials()
    if owner is None or connections[alias].settings_dict["USER"] == owner["USER"]:
        yield
        return
    if connections[alias].in_atomic_block:
        # Reconnecting would silently drop the transaction's work.
        raise RuntimeError("as_owner() reconnects, so it cannot be used inside a transaction")
    previous = use_credentials(alias, owner)
    try:
        yield
    finally:
        use_credentials(alias, previous)


def append_only_models() -> list:
    import pghistory.models

    listed = [apps.get_model(label) for label in APPEND_ONLY_MODELS]
    events = [
        model for model in apps.get_models()
        if issubclass(model, pghistory.models.Event) and model._meta.managed and not model._meta.proxy
    ]
    return listed + events


def application_privileges() -> list[tuple[str, list[str]]]:
    """(privileges, tables) the application role holds: DML on all, less on the evidence."""
    append_only = sorted(model._meta.db_table for model in append_only_models())
    never_deleted = sorted(apps.get_model(label)._meta.db_table for label in NEVER_DELETED_MODELS)
    return [
        ("SELECT, INSERT", append_only),
        ("SELECT, INSERT, UPDATE", never_deleted),
        ("SELECT", ["django_migrations"]),
    ]


def grant_application_privileges(using: str = "default") -> None:
    """Give the application role exactly its privileges (run as the owner, after every migrate)."""
    from psycopg import sql

    connection = connections[using]
    role = sql.Identifier(application_role())
    restricted = application_privileges()
    with transaction.atomic(using=using), connection.cursor() as cursor:
        schema = sql.Identifier(_schema(cursor))
        statements = [
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema, role),
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(schema, role),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, role),
        ]
        for privileges, tables in restricted:
            names = sql.SQL(", ").join(sql.Identifier(table) for table in tables)
            statements.append(sql.SQL("REVOKE ALL ON {} FROM {}").format(names, role))
            statements.append(sql.SQL(f"GRANT {privileges} ON {{}} TO {{}}").format(names, role))
        for statement in statements:
            cursor.execute(statement.as_string(cursor.connection))
    logger.info("Granted the application role %s its privileges", application_role())


def _schema(cursor) -> str:
    cursor.execute("SELECT current_schema()")
    return cursor.fetchone()[0]


def grant_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """post_migrate (sent by migrate and flush, which run as the owner): grant anew."""
    owner = owner_credentials()
    if owner is None:
        return
    if connections[using].settings_dict["USER"] != owner["USER"]:
        logger.warning("Migrations ran as %s, not the owner role: the application's privileges were not granted",
                       connections[using].settings_dict["USER"])
        return
    grant_application_privileges(using)


@checks.register(checks.Tags.security, deploy=True)
def check_application_owns_nothing(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if owner_credentials() is not None:
        return []
    return [
        checks.Warning(
            "The back office connects to the database as the owner of its tables, so it could switch "
            "off the triggers that keep the ledger, the history and the PIN disclosures append-only.",
            hint="Create an owner role and an application role (README, Production database) and set "
            "DATABASE_OWNER_URL to the owner, DATABASE_URL to the application role.",
            id="backoffice.W001",
        )
    ]
