"""A scheduled refresh fills the cache the page reads: the next visitor waits for no query."""

from __future__ import annotations

import os

import pytest
from django.db import connection

from reports.models import QueryLog
from schedules.models import Run
from tests.reports.conftest import source_calls
from tests.schedules.conftest import Processes, due_now, make_claims_report, make_schedule, process_env, run_due
from tests.tpa.conftest import work

pytestmark = pytest.mark.django_db(transaction=True)


def open_every_panel(client, report) -> list[str]:
    pages = []
    for panel in report.panels.all():
        response = client.get(f"/reports/{report.slug}/panels/{panel.pk}/")
        assert response.status_code == 200
        pages.append(response.content.decode())
    return pages


def test_a_due_refresh_fills_the_cache_and_the_page_answers_from_it(owner, analysts, member, member_client):
    report = make_claims_report(owner, groups=[analysts])
    schedule = make_schedule(report)
    due_now(schedule)

    [run] = run_due()
    assert run.status == Run.Status.DONE, run.error
    assert [(panel["title"], panel["row_count"], panel["error"]) for panel in run.panels] == [
        ("Total paid", 1, ""),
        ("Paid by region", 3, ""),
    ]

    before = source_calls()
    pages = open_every_panel(member_client, report)
    assert source_calls() == before  # no query reached the database
    assert all("cached · updated" in html for html in pages)
    assert "6,551" in pages[0] and "4321" in pages[1]
    log = QueryLog.objects.filter(report=report).order_by("created_at")
    assert [(entry.trigger, entry.cache_hit, entry.user_id) for entry in log] == [
        ("schedule", False, owner.pk),
        ("schedule", False, owner.pk),
        ("page", True, member.pk),
        ("page", True, member.pk),
    ]


def test_a_refresh_runs_with_the_schedules_filter_values(owner, analysts, member_client):
    from tests.reports.conftest import make_filter, make_panel, make_report

    report = make_report(owner, groups=[analysts], slug="regions")
    make_filter(report, "region", default="North")
    make_panel(report, "SELECT %(region)s::text AS region, 1 AS n", title="Region")
    schedule = make_schedule(report, filters={"region": ["East"]})
    due_now(schedule)

    [run] = run_due()
    assert run.panels[0]["rows"] == [["East", 1]]
    panel = report.panels.get()
    before = source_calls()
    east = member_client.get(f"/reports/regions/panels/{panel.pk}/?region=East").content.decode()
    assert "cached" in east and source_calls() == before
    north = member_client.get(f"/reports/regions/panels/{panel.pk}/").content.decode()
    assert "cached" not in north and source_calls() == before + 1  # other filters: other entries


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the worker's cache reaches the page only through Redis")
def test_the_scheduler_and_the_worker_as_processes_refresh_the_page(
    owner, analysts, member_client, processes: Processes
):
    report = make_claims_report(owner, groups=[analysts])
    schedule = make_schedule(report)
    due_now(schedule)

    processes.start("scheduler", "scheduler", "--tick", "0.2", env=process_env())
    processes.worker()
    runs = Run.objects.filter(schedule=schedule)
    processes.wait_until(lambda: runs.filter(status=Run.Status.DONE).exists(), "a finished run")

    before = source_calls()
    pages = open_every_panel(member_client, report)
    assert source_calls() == before
    assert all("cached · updated" in html for html in pages)
    assert runs.count() == 1


def test_a_worker_running_many_refreshes_keeps_no_report_connection_open(owner, analysts):
    def report_connections() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            return int(cursor.fetchone()[0])

    report = make_claims_report(owner, groups=[analysts])
    schedule = make_schedule(report)
    work()
    before = report_connections()
    for _ in range(5):
        due_now(schedule)
        [run] = run_due()
        assert run.status == Run.Status.DONE
    # Each task ran on its own event loop; without closing its pool each left connections open.
    assert report_connections() <= before
