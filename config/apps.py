from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackOfficeConfig(AppConfig):
    """Project-wide pieces that belong to no business app: roles, audit log, jobs wiring."""

    name = "config"
    label = "backoffice"
    verbose_name = _("Back office")
