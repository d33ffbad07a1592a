"""Claiming due schedules: each due time becomes one queued Run, however many schedulers run.

    runs = claim_due()        # in one transaction: lock, record, advance, enqueue

Each scheduler locks the due rows it takes with `SELECT ... FOR UPDATE SKIP LOCKED`, so two
schedulers never take the same schedule; it records the run, moves `next_run_at` past now
and enqueues the task in that same transaction (django-tasks-db writes the task row to the
same database), so a scheduler killed half-way leaves nothing behind and another one takes
the schedule. A schedule whose due time passed while every scheduler was down gets one run,
not one per missed tick (`Schedule.next_after`).
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from schedules.models import Run, Schedule

logger = logging.getLogger(__name__)


def claim_due(now: datetime.datetime | None = None, *, limit: int | None = None) -> list[Run]:
    """Queue one run for each schedule due at `now` that no other scheduler holds."""
    from schedules.tasks import execute_run

    now = now or timezone.now()
    runs: list[Run] = []
    with transaction.atomic():
        due = (
            Schedule.objects.due(now)
            .select_for_update(skip_locked=True)
            .order_by("next_run_at")[: limit or settings.SCHEDULES_BATCH]
        )
        for schedule in due:
            run = Run.objects.create(
                schedule=schedule,
                report_id=schedule.report_id,
                trigger=Run.Trigger.SCHEDULE,
                filters=schedule.filters,
                due_at=schedule.next_run_at,
            )
            schedule.next_run_at = schedule.next_after(now)
            schedule.save(update_fields=["next_run_at"])
            run.task_id = str(execute_run.enqueue(run.pk).id)
            run.save(update_fields=["task_id"])
            runs.append(run)
    for run in runs:
        logger.info("schedule %s due at %s: run %s queued", run.schedule_id, run.due_at, run.pk)
    return runs


class AlreadyQueued(Exception):
    """A run of this schedule is waiting for a worker already (a double click, say)."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"Run {run.pk} of this schedule is queued already; it has not started yet.")
        self.run = run


def run_now(schedule: Schedule) -> Run:
    """A run outside the timetable (the page's "Run now", `manage.py schedule_run`); one at a
    time: a second request while one waits gets AlreadyQueued."""
    from schedules.tasks import execute_run

    with transaction.atomic():
        # The lock makes two clicks at once see each other's run.
        Schedule.objects.select_for_update().filter(pk=schedule.pk).first()
        waiting = Run.objects.filter(schedule=schedule, trigger=Run.Trigger.MANUAL, status=Run.Status.QUEUED).first()
        if waiting is not None:
            raise AlreadyQueued(waiting)
        run = Run.objects.create(
            schedule=schedule, report_id=schedule.report_id, trigger=Run.Trigger.MANUAL, filters=schedule.filters
        )
        run.task_id = str(execute_run.enqueue(run.pk).id)
        run.save(update_fields=["task_id"])
    return run
