from django.db import migrations

from config.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [("backoffice", "0001_roles"), ("distributors", "0003_fund_transactions")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
