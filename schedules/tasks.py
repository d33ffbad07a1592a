"""Background work for schedules, run by `manage.py db_worker` (django-tasks-db)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.tasks import task

from project.sources import get_source, source_names
from schedules import delivery, runs


@asynccontextmanager
async def loop_pools_closed() -> AsyncIterator[None]:
    """The worker runs each task on an event loop of its own, and a Postgres source keeps one
    pool per loop: close this task's pools when it ends, or every run would leave its report
    connections open until the database refuses new clients. (Snowflake's pool is shared by
    the process, not the loop: it stays warm.)"""
    try:
        yield
    finally:
        for name in source_names():
            source = get_source(name)
            if source.kind == "postgres":
                await source.close()


@task()
async def execute_run(run_id: int) -> str:
    """Refresh the report of a run, render and queue what it sends; the run's final status."""
    async with loop_pools_closed():
        return await runs.execute(run_id)


@task()
async def deliver(delivery_id: int) -> str:
    """Send one e-mail or webhook call; on failure it enqueues itself again, later."""
    async with loop_pools_closed():
        return await delivery.attempt(delivery_id)
