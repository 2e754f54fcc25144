"""The project's app configs, and those of the third-party apps under names the admin shows.

Third-party apps name themselves and their models in English, or not at all (PGHISTORY / Events,
AXES / Access attempts): the admin's menu, titles and breadcrumbs would show those words to
clerks and auditors. Each is installed here through a subclass of its own AppConfig that gives
the app a translatable name and renames its models in `ready()`. Only the `_meta` read at run time
changes: migrations are built from a model's original Meta, so no migration follows.
"""

import axes.apps
import django_otp.plugins.otp_static.apps
import django_otp.plugins.otp_totp.apps
import procrastinate.contrib.django.apps
from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _
from pghistory.apps import PGHistoryConfig


class BackOfficeConfig(AppConfig):
    """Project-wide pieces that belong to no business app: roles, audit log, jobs wiring."""

    name = "config"
    label = "backoffice"
    verbose_name = _("Back office")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from config import database_roles  # registers its deployment check

        # Once per migrate or flush (sent for every app; this one is enough: every table exists by then).
        post_migrate.connect(database_roles.grant_after_migrate, sender=self)


class BackOfficeAdminConfig(AdminConfig):
    """django.contrib.admin, with the admin site that asks some users for a second factor."""

    default_site = "config.admin_site.BackOfficeAdminSite"


class NamedModelsMixin:
    """Gives the app's models the names in `model_names`: {model_name: (singular, plural)}."""

    model_names: dict[str, tuple[str, str]] = {}

    def ready(self):
        super().ready()
        for model_name, (singular, plural) in self.model_names.items():
            opts = self.get_model(model_name)._meta
            opts.verbose_name, opts.verbose_name_plural = singular, plural


class HistoryConfig(NamedModelsMixin, PGHistoryConfig):
    verbose_name = _("Audit history")
    model_names = {
        "events": (_("audit event"), _("audit log")),
        "middlewareevents": (_("audit event with request"), _("audit log with requests")),
        "context": (_("change context"), _("change contexts")),
    }


class LoginLockoutConfig(NamedModelsMixin, axes.apps.AppConfig):
    verbose_name = _("Login lockouts")
    model_names = {
        "accessattempt": (_("failed login attempt"), _("failed login attempts")),
        "accesslog": (_("login record"), _("login records")),
        "accessfailurelog": (_("failed login"), _("failed logins")),
        "accessattemptexpiration": (_("lockout expiry"), _("lockout expiries")),
    }


class TotpDeviceConfig(NamedModelsMixin, django_otp.plugins.otp_totp.apps.DefaultConfig):
    verbose_name = _("Authenticator apps (TOTP)")
    model_names = {"totpdevice": (_("authenticator app"), _("authenticator apps"))}


class StaticDeviceConfig(NamedModelsMixin, django_otp.plugins.otp_static.apps.DefaultConfig):
    verbose_name = _("Backup codes")
    model_names = {
        "staticdevice": (_("backup code set"), _("backup code sets")),
        "statictoken": (_("backup code"), _("backup codes")),
    }


class JobQueueConfig(NamedModelsMixin, procrastinate.contrib.django.apps.ProcrastinateConfig):
    verbose_name = _("Background jobs")
    model_names = {
        "procrastinatejob": (_("background job"), _("background jobs")),
        "procrastinateevent": (_("job event"), _("job events")),
        "procrastinateworker": (_("worker"), _("workers")),
        "procrastinateperiodicdefer": (_("scheduled run"), _("scheduled runs")),
    }


class ImportExportConfig(AppConfig):
    name = "import_export"
    verbose_name = _("Spreadsheet import and export")
