from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

import pytest

from config.provider_settings import provider_accounts

SUITE_LOG = Path(tempfile.gettempdir()) / f"backoffice-suite-{os.getpid()}.log"


def pytest_configure(config):
    """Keep every log line of the run, so the last test can search it for secrets and PINs."""
    handler = logging.FileHandler(SUITE_LOG, mode="w", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)


def pytest_collection_modifyitems(items):
    """Let every database test use the call-log and progress connections (more connections, same database)."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is not None and "databases" not in marker.kwargs:
            item.add_marker(
                pytest.mark.django_db(*marker.args, **marker.kwargs, databases=["default", "call_log", "progress"]),
                append=False,
            )


@pytest.fixture(autouse=True)
def roles_exist(request):
    """Transactional tests end with a flush that empties every table, groups included: put them back."""
    if request.node.get_closest_marker("django_db") is None:
        return
    from django.apps import apps
    from django.contrib.auth.models import Group

    from config.roles import ROLE_PERMISSIONS, sync_roles

    if Group.objects.filter(name__in=ROLE_PERMISSIONS).count() < len(ROLE_PERMISSIONS):
        sync_roles(apps)


@pytest.fixture
def no_jobs_left_over():
    """For tests whose jobs a worker takes: Django's flush between transactional tests skips
    procrastinate's unmanaged tables, so each such test starts with them empty."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM procrastinate_events; DELETE FROM procrastinate_periodic_defers; DELETE FROM procrastinate_jobs"
        )


@pytest.fixture
def clerk():
    from config.roles import FINANCE_CLERK
    from tests.factories import make_user

    return make_user("clerk", FINANCE_CLERK)


@pytest.fixture
def supervisor():
    from config.roles import FINANCE_SUPERVISOR
    from tests.factories import make_user

    return make_user("supervisor", FINANCE_SUPERVISOR)


@pytest.fixture(autouse=True)
def card_pin_keys(settings):
    """Card PINs need a key of their own; tests get a fresh one unless the environment set it."""
    if not settings.CARD_PIN_KEYS:
        from cryptography.fernet import Fernet

        settings.CARD_PIN_KEYS = [Fernet.generate_key().decode()]


@pytest.fixture(scope="session")
def sandbox_server():
    """The fake upstreams on a free local port, for the whole test session."""
    from providers.sandbox.server import serve

    httpd = serve("127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def sandbox_environment(sandbox_server):
    from providers.sandbox.vendors import demo_environment

    return demo_environment(sandbox_server.sandbox.base_url, "http://127.0.0.1:8000")


@pytest.fixture
def sandbox(sandbox_server, sandbox_environment, settings):
    """Point every provider's default account at the sandbox; faults are cleared after each test."""
    settings.PROVIDERS = provider_accounts(sandbox_environment)
    sandbox_server.sandbox.reset()
    yield sandbox_server.sandbox
    sandbox_server.sandbox.clear_faults()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings):
    """Create and migrate the test database as the owner role, as `manage.py migrate` does.

    Returns the application role's credentials, given back once the database is ready.
    """
    from config.database_roles import owner_credentials, use_credentials

    if owner_credentials() is None:
        return None
    return use_credentials("default", owner_credentials())


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_modify_db_settings, django_db_blocker):
    """The tests run as the application role, which owns nothing; the owner drops the database.

    The call-log connection is closed before the drop too (it would block it).
    """
    from django.db import connections

    from config.database_roles import use_credentials

    application = django_db_modify_db_settings
    if application is None:
        yield
    else:
        with django_db_blocker.unblock():
            owner = use_credentials("default", application)
        yield
        with django_db_blocker.unblock():
            use_credentials("default", owner)
    with django_db_blocker.unblock():
        connections["call_log"].close()
        connections["progress"].close()


def closed_port_url() -> str:
    """A local URL nothing listens on: connecting is refused before any byte is sent."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def sandbox_with_callbacks(sandbox, sandbox_environment, live_server, settings):
    """The sandbox, with its status callbacks delivered to a live back office (a real HTTP server)."""
    environment = {
        **sandbox_environment,
        "EXCHANGE_CALLBACK_URL": live_server.url + "/callbacks/exchange/",
        "BST17_CALLBACK_URL": live_server.url + "/callbacks/bst17/",
    }
    settings.PROVIDERS = provider_accounts(environment)
    settings.ALLOWED_HOSTS = ["*"]
    exchange = sandbox.vendor("exchange")
    exchange.callback_delay = 0.05
    exchange.callback_retry_delays = (0.1, 0.2, 0.5)
    return sandbox
