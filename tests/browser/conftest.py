"""Browser tests: Playwright driving Debian's Chromium against the back office as the README starts it.

The `backoffice` session fixture runs this checkout's `bash scripts/start` (embedded PostgreSQL
under var/, migrations, demo data, the sandbox upstreams on :8100, the worker and the web server
on :8000) in its own process group, waits for the login page, reads var/demo-password, and kills
the whole group once the last browser test of the session has run (so the rest of the suite never
runs with a live server on :8000). Nothing here uses the pytest-django test database.

The clerk's and the supervisor's TOTP keys (both move money) are learnt from the real enrolment
page the first time and kept in var/browser-tests/<username>-totp.json (beside var/demo-password),
so a later session on the same var/ signs in with a code instead of enrolling again.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # this checkout: its scripts/start and its var/
HOST = "127.0.0.1"
PORT = 8000
SANDBOX_PORT = 8100
BASE_URL = f"http://{HOST}:{PORT}"
LOGIN_URL = f"{BASE_URL}/admin/login/"
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
SERVER_LOG = ARTIFACTS / "browser-server.log"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
START_TIMEOUT = float(os.environ.get("BROWSER_START_TIMEOUT", "300"))  # a first start installs and migrates
STOP_TIMEOUT = 20.0
TOTP_DIR = ROOT / "var" / "browser-tests"
# What scripts/test exports for the pytest run; the server is started as the README starts it,
# without them (DEBUG=0 would make its cookies HTTPS-only) and on the embedded PostgreSQL.
TEST_RUN_VARIABLES = (
    "DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT", "STATIC_MANIFEST", "DATABASE_URL", "DATABASE_OWNER_URL",
)


def _listening(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


def _log_tail(lines: int = 40) -> str:
    try:
        return "\n".join(SERVER_LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class TotpKey:
    """A demo user's TOTP key and the last time step used (a code is accepted once)."""

    path: Path
    key: bytes | None = None
    last_step: int = -1

    @classmethod
    def load(cls, username: str) -> TotpKey:
        path = TOTP_DIR / f"{username}-totp.json"
        try:
            data = json.loads(path.read_text())
            return cls(path, key=base64.b32decode(data["key"]), last_step=int(data.get("last_step", -1)))
        except (OSError, ValueError, KeyError):
            return cls(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(mode=0o600)
        self.path.write_text(json.dumps({"key": base64.b32encode(self.key).decode(), "last_step": self.last_step}))

    def code(self) -> str:
        """A code for a time step not used yet, waiting for the next step when needed."""
        from django_otp.oath import TOTP

        assert self.key is not None, f"the TOTP key in {self.path} is not known"
        totp = TOTP(self.key)
        while totp.t() <= self.last_step:
            time.sleep(0.5)
            totp = TOTP(self.key)
        if 30 - (time.time() % 30) < 2:  # about to roll over: take the next step rather than race it
            time.sleep(30 - (time.time() % 30) + 0.2)
            totp = TOTP(self.key)
        self.last_step = totp.t()
        self.save()
        return f"{totp.token():06d}"


@dataclass
class Backoffice:
    base_url: str
    password: str
    process: subprocess.Popen
    totp_keys: dict[str, TotpKey] = field(default_factory=dict)

    def totp_key(self, username: str) -> TotpKey:
        if username not in self.totp_keys:
            self.totp_keys[username] = TotpKey.load(username)
        return self.totp_keys[username]

    def url(self, path: str) -> str:
        return self.base_url + path

    def stop(self) -> None:
        """Kill scripts/start and everything it started (its process group), SIGTERM then SIGKILL."""
        group = self.process.pid
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 10.0)):
            if not _group_alive(self.process):
                break
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.process):
                time.sleep(0.2)
        self.process.poll()


def _group_alive(process: subprocess.Popen) -> bool:
    """Whether any process of the group is still running (zombies left to an init that never reaps don't count)."""
    import psutil

    process.poll()  # reap the script itself
    for candidate in psutil.process_iter(["status"]):
        try:
            if os.getpgid(candidate.pid) == process.pid and candidate.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


_running: Backoffice | None = None


@pytest.fixture(scope="session")
def backoffice():
    """The back office started by this checkout's `bash scripts/start`, once per session."""
    global _running
    for port, what in ((PORT, "the web server"), (SANDBOX_PORT, "the sandbox upstreams")):
        if _listening(port):
            pytest.fail(
                f"Port {port} ({what}) is already in use on {HOST}: the browser tests start their own back office "
                f"with `bash scripts/start` and will not test some other server. Stop whatever listens there "
                f"(`ss -ltnp 'sport = :{port}'`), e.g. a `scripts/start` left running, and run the tests again."
            )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):  # this session's screenshots only
        old.unlink()
    environment = {name: value for name, value in os.environ.items() if name not in TEST_RUN_VARIABLES}
    with SERVER_LOG.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "scripts/start"], cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,  # its own process group, killed whole
        )
    started = Backoffice(base_url=BASE_URL, password="", process=process)
    _running = started
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"`bash scripts/start` exited with {process.returncode}; its log ({SERVER_LOG}):\n"
                            f"{_log_tail()}")
            try:
                with urllib.request.urlopen(LOGIN_URL, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{LOGIN_URL} did not answer within {START_TIMEOUT:.0f}s of `bash scripts/start`; "
                            f"its log ({SERVER_LOG}):\n{_log_tail()}")
            time.sleep(1)
        started.password = (ROOT / "var" / "demo-password").read_text().strip()
        yield started
    finally:
        started.stop()
        _running = None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop the server after the last browser test, not at the end of the whole suite."""
    if _running is not None and (nextitem is None or nextitem.get_closest_marker("browser") is None):
        _running.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `bash scripts/test` installs Debian's chromium package "
                    f"(apt-get install -y chromium, as root); the browser tests never download a browser.")
    return CHROMIUM


@pytest.fixture(scope="module")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture
def open_browser(playwright_instance, chromium_path, backoffice):
    """open_browser(): a new page in a Chromium with a fresh profile, speaking Simplified Chinese."""
    contexts = []
    profiles = []

    def open_():
        profile = tempfile.mkdtemp(prefix="backoffice-chromium-")
        profiles.append(profile)
        context = playwright_instance.chromium.launch_persistent_context(
            profile, executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS,
            locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1680, "height": 1000},
            extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
        )
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.pages[0] if context.pages else context.new_page()

    yield open_
    for context in contexts:
        context.close()
    for profile in profiles:
        import shutil

        shutil.rmtree(profile, ignore_errors=True)
