from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reports.management.commands.run_report import format_table
from schedules.models import Schedule


class Command(BaseCommand):
    help = "List schedules: when each runs next, what it sends, and how its last run ended."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--report", help="Only this report's schedules (its slug).")

    def handle(self, *args: Any, report: str | None, **options: Any) -> None:
        schedules = Schedule.objects.select_related("report", "owner").prefetch_related(
            "subscriptions", "alerts", "runs"
        )
        if report:
            schedules = schedules.filter(report__slug=report)
        rows = []
        for schedule in schedules.order_by("report__slug", "pk"):
            last = next(iter(schedule.runs.all()), None)
            rows.append(
                [
                    schedule.pk,
                    schedule.report.slug,
                    schedule.describe(),
                    "on" if schedule.enabled else "off",
                    f"{schedule.next_run_at:%Y-%m-%d %H:%M} UTC" if schedule.next_run_at else "-",
                    f"{last.status} {last.created_at:%Y-%m-%d %H:%M}" if last else "-",
                    sum(item.active for item in schedule.subscriptions.all()),
                    sum(item.active for item in schedule.alerts.all()),
                    schedule.note,
                ]
            )
        columns = ["id", "report", "when", "enabled", "next run", "last run", "subscriptions", "alerts", "note"]
        self.stdout.write(format_table(columns, rows) if rows else "No schedules.")
