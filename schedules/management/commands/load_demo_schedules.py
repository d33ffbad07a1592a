from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from reports.models import Report
from schedules.models import Alert, Schedule, Subscription

SLUG = "claims-overview"


class Command(BaseCommand):
    help = (
        "Demo schedules on the claims report: a refresh every 5 minutes with an alert, and a weekday "
        "07:00 e-mail whose first run is now (mail goes to .data/mail/); safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = Report.objects.filter(slug=SLUG).select_related("owner").first()
        if report is None:
            self.stderr.write(self.style.WARNING(f"No {SLUG} report (load_demo_reports makes it): no demo schedules."))
            return
        owner, now = report.owner, timezone.now()
        refresh, created = Schedule.objects.get_or_create(
            report=report,
            name="Refresh every 5 minutes",
            defaults={"owner": owner, "kind": Schedule.Kind.INTERVAL, "interval_minutes": 5, "next_run_at": now},
        )
        panel = report.panels.filter(title="Total paid").first()
        if created and panel is not None:
            Alert.objects.create(schedule=refresh, owner=owner, panel=panel, column="Total paid", threshold=1_000_000)
        morning, created = Schedule.objects.get_or_create(
            report=report,
            name="Weekday mornings",
            defaults={
                "owner": owner,
                "kind": Schedule.Kind.CRON,
                "cron": "0 7 * * 1-5",
                "timezone": "Europe/Paris",
                "next_run_at": now,  # the first e-mail goes out as soon as the demo runs
            },
        )
        if created:
            Subscription.objects.create(schedule=morning, owner=owner, addresses="analysts@example.com")
        self.stdout.write(self.style.SUCCESS(f"Demo schedules ready on {SLUG}: {refresh}, {morning}"))
