"""A bench's own database: made and dropped by the owner role, used by the application role.

As the test suite does (tests/conftest.py): the bench measures the back office as deployed, on a
connection that owns nothing (config.database_roles).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from django.test.utils import setup_databases, teardown_databases

from config.database_roles import owner_credentials, use_credentials


@contextmanager
def bench_databases(aliases: tuple[str, ...] = ("default", "call_log", "progress")) -> Iterator[None]:
    owner = owner_credentials()
    application = use_credentials("default", owner) if owner else None
    databases = setup_databases(verbosity=0, interactive=False, aliases=set(aliases))
    if application:
        use_credentials("default", application)
    try:
        yield
    finally:
        for alias in connections:
            connections[alias].close()
        if owner:
            use_credentials("default", owner)
        teardown_databases(databases, verbosity=0)
