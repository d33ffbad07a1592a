"""Background work, run by `manage.py db_worker` (django-tasks-db)."""

from __future__ import annotations

from django.tasks import task

from tpa.pipeline import execute_run


@task()
async def run_pipeline(run_id: int) -> str:
    """Execute a queued pipeline run; its final status."""
    run = await execute_run(run_id)
    return str(run.status)
