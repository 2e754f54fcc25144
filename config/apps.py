from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _


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
