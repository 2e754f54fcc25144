from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _


class BackOfficeConfig(AppConfig):
    """Project-wide pieces that belong to no business app: roles, audit log, jobs wiring."""

    name = "config"
    label = "backoffice"
    verbose_name = _("Back office")


class BackOfficeAdminConfig(AdminConfig):
    """django.contrib.admin, with the admin site that asks some users for a second factor."""

    default_site = "config.admin_site.BackOfficeAdminSite"
