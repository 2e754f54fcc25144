from django.db import migrations

from config.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [("backoffice", "0002_fund_transaction_roles"), ("axes", "0010_accessattemptexpiration")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
