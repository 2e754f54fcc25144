"""The database keeps the evidence append-only against the application's own connection.

The suite runs as the application role (tests/conftest.py switches to it once the owner has made
the test database), so every statement here is one the web server or the worker could send.
"""

from __future__ import annotations

import os
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connection, transaction

from config.database_roles import append_only_models, as_owner, check_application_owns_nothing
from distributors.models import LedgerEntry
from tests.factories import fund, make_distributor
from tests.test_configuration import run_settings

pytestmark = pytest.mark.django_db

INSUFFICIENT_PRIVILEGE = "42501"


def refused(statement: str, params=()) -> str:
    """Run `statement` in a savepoint on the application's connection; the SQLSTATE it failed with."""
    with pytest.raises(DatabaseError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)
    return raised.value.__cause__.sqlstate


@pytest.fixture
def entry():
    [entry] = fund(make_distributor(), "10.00")
    return entry


def test_the_suite_runs_as_an_application_role_that_owns_nothing_and_is_no_superuser():
    assert settings.DATABASE_OWNER is not None, "the suite needs the owner role too (DATABASE_OWNER_URL)"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls,"
            "       (SELECT count(*) FROM pg_class WHERE relowner = r.oid),"
            "       (SELECT count(*) FROM pg_proc WHERE proowner = r.oid),"
            "       (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)"
            "  FROM pg_roles r WHERE rolname = current_user"
        )
        user, superuser, createrole, createdb, bypassrls, relations, functions, schemas = cursor.fetchone()
    assert user == settings.DATABASE_APPLICATION_ROLE != settings.DATABASE_OWNER["USER"]
    assert (superuser, createrole, createdb, bypassrls) == (False, False, False, False)
    assert (relations, functions, schemas) == (0, 0, 0)


@pytest.mark.parametrize("statement", [
    "UPDATE distributors_ledgerentry SET amount = 1000 WHERE id = %s",
    "DELETE FROM distributors_ledgerentry WHERE id = %s",
])
def test_telling_pgtrigger_to_ignore_the_ledger_trigger_does_not_let_the_application_rewrite_it(entry, statement):
    with pytest.raises(DatabaseError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL pgtrigger.ignore = 'distributors_ledgerentry:ledger_append_only'")
        cursor.execute(statement, [entry.pk])
    assert raised.value.__cause__.sqlstate == INSUFFICIENT_PRIVILEGE
    entry.refresh_from_db()
    assert entry.amount == Decimal("10.00")


def test_the_application_cannot_switch_the_ledger_trigger_off(entry):
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'distributors_ledgerentry'::regclass"
                       " AND tgname LIKE '%%ledger_append_only%%'")
        [(trigger,)] = cursor.fetchall()
    for statement in (
        "ALTER TABLE distributors_ledgerentry DISABLE TRIGGER ALL",
        "ALTER TABLE distributors_ledgerentry DISABLE TRIGGER USER",
        f'DROP TRIGGER "{trigger}" ON distributors_ledgerentry',
        "ALTER TABLE distributors_ledgerentry OWNER TO CURRENT_USER",
        "SET session_replication_role = replica",  # the other way round every trigger
    ):
        assert refused(statement) == INSUFFICIENT_PRIVILEGE, statement
    assert LedgerEntry.objects.filter(pk=entry.pk, amount=Decimal("10.00")).exists()


@pytest.mark.parametrize("model", append_only_models(), ids=lambda model: model._meta.label)
def test_every_append_only_table_refuses_update_delete_and_truncate_from_the_application(model):
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    for statement in (
        f"UPDATE {table} SET {pk} = {pk}",
        f"DELETE FROM {table}",
        f"TRUNCATE {table}",
        f"TRUNCATE {table} CASCADE",
    ):
        assert refused(statement) == INSUFFICIENT_PRIVILEGE, statement
    with connection.cursor() as cursor:  # and it may still read them
        cursor.execute(f"SELECT count(*) FROM {table}")


def test_no_table_can_be_truncated_by_the_application():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            "   AND relkind IN ('r', 'p') AND has_table_privilege(oid, 'TRUNCATE, REFERENCES, TRIGGER')"
        )
        assert cursor.fetchall() == []


def test_the_application_may_not_rewrite_the_migration_history():
    assert refused("DELETE FROM django_migrations") == INSUFFICIENT_PRIVILEGE


@pytest.mark.django_db(transaction=True)
def test_the_owner_may_still_do_what_migrations_need():
    # The credentials the test database was migrated with: the owner's connection can.
    with as_owner(), connection.cursor() as cursor:
        cursor.execute("SELECT current_user, has_table_privilege('distributors_ledgerentry', 'TRUNCATE')")
        assert cursor.fetchone() == (settings.DATABASE_OWNER["USER"], True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == (settings.DATABASE_APPLICATION_ROLE,)
    with pytest.raises(RuntimeError, match="inside a transaction"), transaction.atomic(), as_owner():
        pass


def test_the_deployment_check_warns_when_the_application_would_be_the_owner(settings):
    assert check_application_owns_nothing(None) == []
    settings.DATABASE_OWNER = None
    [warning] = check_application_owns_nothing(None)
    assert warning.id == "backoffice.W001" and warning.level == checks.WARNING


def settings_error(**env: str) -> str:
    result = run_settings("pass", DEBUG="1", **env)
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("env", "message"), [
    ({"DATABASE_URL": "postgres://app@db/backoffice", "DATABASE_OWNER_URL": "postgres://owner@db/other"},
     "must be the same database"),
    ({"DATABASE_URL": "postgres://app@db/backoffice", "DATABASE_OWNER_URL": "postgres://app:x@db/backoffice"},
     "two different roles"),
    ({"DATABASE_OWNER_URL": "postgres://owner@db/backoffice"}, "without DATABASE_URL"),
])
def test_an_owner_url_that_cannot_be_the_same_database_as_another_role_is_refused(env, message):
    assert message in settings_error(**env)


def test_an_embedded_database_made_before_the_roles_is_handed_over_to_the_owner():
    """Objects a superuser made (an older var/pgdata) pass to the owner, identity sequences with them."""
    from config.embedded_db import OWNER_ROLE, _hand_over_to_owner, _start

    socket_dir, superuser = _start(settings.VAR_DIR / "pgdata")
    scratch = f"handover_{os.getpid()}"
    with psycopg.connect(host=socket_dir, user=superuser, dbname="postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{scratch}"')
    try:
        with psycopg.connect(host=socket_dir, user=superuser, dbname=scratch, autocommit=True) as conn:
            conn.execute("CREATE TABLE ledger (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)")
            conn.execute("CREATE TABLE legacy (id serial PRIMARY KEY)")
            conn.execute("CREATE SEQUENCE counter")
            conn.execute("CREATE VIEW ledger_view AS SELECT id FROM ledger")
            conn.execute("CREATE TYPE job_status AS ENUM ('todo', 'done')")
            conn.execute("CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42'")

            _hand_over_to_owner(conn)
            _hand_over_to_owner(conn)  # a second start finds nothing left to do

            owners = conn.execute(
                "SELECT relname, pg_get_userbyid(relowner) FROM pg_class"
                " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S', 'v') ORDER BY relname"
            ).fetchall()
            assert owners == [(name, OWNER_ROLE) for name in
                              ("counter", "ledger", "ledger_id_seq", "ledger_view", "legacy", "legacy_id_seq")]
            assert conn.execute("SELECT pg_get_userbyid(typowner) FROM pg_type WHERE typname = 'job_status'"
                                ).fetchone() == (OWNER_ROLE,)
            assert conn.execute("SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'answer'"
                                ).fetchone() == (OWNER_ROLE,)
    finally:
        with psycopg.connect(host=socket_dir, user=superuser, dbname="postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
