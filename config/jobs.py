"""Helpers shared by background jobs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from procrastinate import JobContext

from config.history import job_context


def attributed(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a job body inside a history context naming the task and job, so its writes are attributed."""

    @functools.wraps(func)
    def wrapper(context: JobContext, *args: Any, **kwargs: Any) -> Any:
        job = context.job
        with job_context(job.task_name, job.id):
            return func(context, *args, **kwargs)

    return wrapper
