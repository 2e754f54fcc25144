"""The file jobs' background tasks: an import's check and its run, an export's writing.

None is retried: a failure is recorded on the FileJob for the clerk to see, and a second run
would only repeat it. Each body claims its job first, so a job queued twice runs once.
"""

from __future__ import annotations

from procrastinate import JobContext
from procrastinate.contrib.django import app

from config.jobs import attributed


@app.task(queue="imports", pass_context=True, name="files.check_import")
@attributed
def check_file_import(context: JobContext, file_job_id: int) -> str:
    from config.imports import file_import_check

    return file_import_check(file_job_id=file_job_id)


@app.task(queue="imports", pass_context=True, name="files.run_import")
@attributed
def run_file_import(context: JobContext, file_job_id: int) -> str:
    from config.imports import file_import_run

    return file_import_run(file_job_id=file_job_id)


@app.task(queue="exports", pass_context=True, name="files.run_export")
@attributed
def run_file_export(context: JobContext, file_job_id: int) -> str:
    from config.exports import file_export_run

    return file_export_run(file_job_id=file_job_id)
