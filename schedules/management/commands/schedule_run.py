from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from schedules.models import Schedule
from schedules.scheduler import AlreadyQueued, run_now


class Command(BaseCommand):
    help = "Queue a run of one schedule now (a task worker, `manage.py db_worker`, runs it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("schedule_id", type=int, help="The schedule's id (see schedules_list).")

    def handle(self, *args: Any, schedule_id: int, **options: Any) -> None:
        try:
            schedule = Schedule.objects.select_related("report").get(pk=schedule_id)
        except Schedule.DoesNotExist:
            raise CommandError(f"No schedule {schedule_id}; `manage.py schedules_list` shows them.") from None
        try:
            run = run_now(schedule)
        except AlreadyQueued as queued:
            raise CommandError(str(queued)) from None
        self.stdout.write(f"queued run {run.pk} of {schedule.report.slug} ({schedule.describe()}); task {run.task_id}")
