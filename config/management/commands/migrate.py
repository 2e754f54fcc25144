"""migrate, connected as the owner role (config.database_roles), which then grants the application its privileges."""

from django.core.management.commands import migrate

from config.database_roles import as_owner


class Command(migrate.Command):
    def handle(self, *args, **options):
        with as_owner(options["database"]):
            return super().handle(*args, **options)
