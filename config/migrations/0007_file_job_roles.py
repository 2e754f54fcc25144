from django.db import migrations

from config.roles import sync_roles


class Migration(migrations.Migration):
    # Supervisors and auditors read every import and export (backoffice.view_filejob).
    dependencies = [("backoffice", "0006_file_jobs"), ("distributors", "0008_file_jobs_replace_import_jobs"),
                    ("orders", "0005_batch_imports_are_file_jobs")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
