"""Background work for schedules, run by `manage.py db_worker` (django-tasks-db).

The worker runs each task on an event loop of its own; the Postgres source closes that
loop's pool when the loop ends (project/sources/postgres.py), so a run leaves no report
connection open (tests/schedules/test_refresh.py checks it).
"""

from __future__ import annotations

from django.tasks import task

from schedules import delivery, runs


@task()
async def execute_run(run_id: int) -> str:
    """Refresh the report of a run, render and queue what it sends; the run's final status."""
    return await runs.execute(run_id)


@task()
async def deliver(delivery_id: int) -> str:
    """Send one e-mail or webhook call; on failure it enqueues itself again, later."""
    return await delivery.attempt(delivery_id)
