"""Background work, run by `manage.py db_worker` (django-tasks-db)."""

from __future__ import annotations

from django.tasks import task

from tpa.pipeline import execute_run, recover_abandoned


@task()
async def run_pipeline(run_id: int) -> str:
    """Execute a queued pipeline run; its final status. Runs left behind by a worker that
    died are marked failed first, so a restarted worker cleans up after the one it replaces."""
    await recover_abandoned()
    run = await execute_run(run_id)
    return str(run.status)
