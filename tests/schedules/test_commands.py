"""manage.py schedules_list and schedule_run: a table to read, and a run queued now."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from schedules.models import Run
from tests.schedules.conftest import make_alert, make_claims_report, make_schedule, make_subscription

pytestmark = pytest.mark.django_db


def test_it_lists_schedules_with_their_next_run_and_what_hangs_on_them(owner):
    report = make_claims_report(owner)
    schedule = make_schedule(report, kind="cron", cron="0 7 * * 1-5", timezone="Europe/Paris")
    make_subscription(schedule, owner)
    make_alert(schedule, owner, threshold=1)
    out = io.StringIO()
    call_command("schedules_list", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "id",
        "report",
        "when",
        "enabled",
        "next",
        "run",
        "last",
        "run",
        "subscriptions",
        "alerts",
        "note",
    ]
    assert f"{schedule.next_run_at:%Y-%m-%d %H:%M} UTC" in lines[2]
    assert "cron 0 7 * * 1-5 (Europe/Paris)" in lines[2] and " on " in lines[2]


def test_it_queues_a_schedule_now_and_names_a_missing_one(owner):
    schedule = make_schedule(make_claims_report(owner))
    out = io.StringIO()
    call_command("schedule_run", str(schedule.pk), stdout=out)
    run = Run.objects.get()
    assert out.getvalue().startswith(f"queued run {run.pk} of claims (every 60 min); task ")
    assert run.trigger == Run.Trigger.MANUAL
    with pytest.raises(CommandError, match="No schedule 999; `manage.py schedules_list` shows them."):
        call_command("schedule_run", "999")


def test_the_demo_schedules_are_made_once_and_run_as_soon_as_the_demo_starts(owner):
    from django.utils import timezone

    from tests.reports.conftest import make_panel, make_report

    report = make_report(owner, slug="claims-overview")
    make_panel(report, 'SELECT 1 AS "Total paid"', title="Total paid")
    for _ in range(2):
        call_command("load_demo_schedules", stdout=io.StringIO())
    schedules = list(report.schedules.order_by("pk"))
    assert [schedule.name for schedule in schedules] == ["Refresh every 5 minutes", "Weekday mornings"]
    assert all(schedule.next_run_at <= timezone.now() for schedule in schedules)
    assert [s.alerts.count() for s in schedules] == [1, 0] and [s.subscriptions.count() for s in schedules] == [0, 1]
