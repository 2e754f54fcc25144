from django.db import migrations

from config.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [("backoffice", "0003_login_lockout_roles"), ("orders", "0001_initial")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
