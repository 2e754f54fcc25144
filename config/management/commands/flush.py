"""flush, connected as the owner role: the application role may not empty the append-only tables."""

from django.core.management.commands import flush

from config.database_roles import as_owner


class Command(flush.Command):
    def handle(self, **options):
        with as_owner(options["database"]):
            return super().handle(**options)
