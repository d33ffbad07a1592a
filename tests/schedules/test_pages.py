"""The report page's schedules section: who sees and changes what, and the on-demand PDF."""

from __future__ import annotations

import io

import pytest
from django.contrib.messages import get_messages
from pypdf import PdfReader

from schedules.models import Alert, Run, Schedule, Subscription
from tests.reports.conftest import make_filter
from tests.schedules.conftest import due_now, make_alert, make_claims_report, make_schedule, make_subscription, run_due
from tests.tpa.conftest import work

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def report(owner, analysts):
    return make_claims_report(owner, groups=[analysts])


def said(response) -> list[str]:
    """The messages the next page shows (those of earlier requests not yet shown included)."""
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_report_page_makes_room_for_the_section(report, member_client):
    response = member_client.get("/reports/claims/")  # streamed: the layout, then each panel
    html = b"".join(response).decode()
    assert 'data-schedules-url="/reports/claims/schedules/"' in html
    assert "/static/schedules/schedules.js" in html


def test_the_page_says_when_it_was_refreshed_and_when_the_next_refresh_is(report, member_client):
    assert "No schedule refreshes the report" in member_client.get("/reports/claims/schedules/").content.decode()
    schedule = make_schedule(report)
    due_now(schedule)
    run_due()
    schedule.refresh_from_db()

    html = member_client.get("/reports/claims/schedules/").content.decode()
    assert f'Refreshed on schedule <time datetime="{schedule.last_run_at.isoformat()}">' in html
    assert f'next refresh <time datetime="{schedule.next_run_at.isoformat()}">' in html
    assert "New schedule" not in html and "Run history" not in html  # a member reads, the owner manages


def test_the_refresh_line_is_for_the_filters_on_the_page(owner, analysts, member_client):
    report = make_claims_report(owner, groups=[analysts])
    make_filter(report, "region", default="North")
    schedule = make_schedule(report, filters={"region": ["East"]})
    due_now(schedule)
    run_due()
    assert "Refreshed on schedule" in member_client.get("/reports/claims/schedules/?region=East").content.decode()
    assert "No schedule refreshes" in member_client.get("/reports/claims/schedules/?region=North").content.decode()


def test_the_outsider_gets_403_for_the_section_and_every_change(report, outsider_client, member_client):
    schedule = make_schedule(report)
    assert outsider_client.get("/reports/claims/schedules/").status_code == 403
    for client in (outsider_client, member_client):  # the member sees the report, but it is not theirs
        assert client.post("/reports/claims/schedules/add", {"kind": "cron", "cron": "0 7 * * *"}).status_code == 403
        assert client.post(f"/reports/claims/schedules/{schedule.pk}/run").status_code == 403
        assert client.post(f"/reports/claims/schedules/schedule/{schedule.pk}/remove").status_code == 403
    assert Schedule.objects.count() == 1 and not Run.objects.exists()


def test_the_owner_schedules_the_report_with_the_filters_on_the_page(owner, analysts, owner_client):
    report = make_claims_report(owner, groups=[analysts])
    make_filter(report, "region", default="North")
    response = owner_client.post(
        "/reports/claims/schedules/add",
        {"kind": "cron", "cron": "30 6 * * 1-5", "timezone": "Europe/Paris", "filters": "region=East"},
    )
    assert response.status_code == 302 and response["Location"] == "/reports/claims/?region=East#schedules"
    schedule = Schedule.objects.get()
    assert (schedule.owner, schedule.filters, schedule.cron, schedule.enabled) == (
        owner,
        {"region": ["East"]},
        "30 6 * * 1-5",
        True,
    )
    assert said(response) == [
        f"Scheduled cron 30 6 * * 1-5 (Europe/Paris); first run {schedule.next_run_at:%Y-%m-%d %H:%M} UTC."
    ]
    html = owner_client.get("/reports/claims/schedules/?region=East").content.decode()
    assert "cron 30 6 * * 1-5 (Europe/Paris) · filters: Region: East · <strong>these filters</strong>" in html


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"kind": "cron", "cron": "every morning"}, "'every morning' is not a cron expression"),
        ({"kind": "cron", "cron": ""}, "Give a cron expression"),
        ({"kind": "interval"}, "Give the number of minutes between runs"),
        ({"kind": "cron", "cron": "0 7 * * *", "timezone": "Mars/Olympus"}, "'Mars/Olympus' is not a time zone"),
    ],
)
def test_a_bad_schedule_is_refused_with_what_is_wrong(report, owner_client, posted, message):
    response = owner_client.post("/reports/claims/schedules/add", {"timezone": "UTC", **posted})
    assert response.status_code == 302
    [text] = said(response)
    assert text.startswith("The schedule was not saved.") and message in text
    assert not Schedule.objects.exists()


def test_bad_filter_values_are_refused_before_scheduling(owner, analysts, owner_client):
    report = make_claims_report(owner, groups=[analysts])
    make_filter(report, "amount", kind="number")
    response = owner_client.post(
        "/reports/claims/schedules/add",
        {"kind": "cron", "cron": "0 7 * * *", "timezone": "UTC", "filters": "amount=lots"},
    )
    assert said(response) == ["Fix the filters before scheduling: amount: “lots” is not a number"]
    assert not Schedule.objects.exists()


def test_the_owner_adds_a_subscription_and_an_alert_to_a_schedule(report, owner, member, owner_client):
    schedule = make_schedule(report)
    panel = report.panels.get(title="Total paid")
    response = owner_client.post(
        "/reports/claims/schedules/subscriptions/add",
        {"schedule": schedule.pk, "users": [member.pk], "addresses": "finance@example.com", "attach_csv": "on"},
    )
    assert said(response) == ["Subscribed: the PDF goes out every 60 min."]
    subscription = Subscription.objects.get()
    assert subscription.recipient_list() == ["alice@example.com", "bob@example.com", "finance@example.com"]

    response = owner_client.post(
        "/reports/claims/schedules/alerts/add",
        {
            "schedule": schedule.pk,
            "panel": panel.pk,
            "column": "total_paid",
            "condition": "above",
            "threshold": "10000",
            "webhook_url": "https://hooks.example.com/fanout",
        },
    )
    alert = Alert.objects.get()
    assert said(response)[-1:] == ["Alert saved: Total paid · total_paid is above 10000, checked every 60 min."]
    assert len(alert.webhook_secret) >= 40  # made for the owner, shown in the admin

    html = owner_client.get("/reports/claims/schedules/").content.decode()
    assert "E-mail PDF and CSV to alice@example.com, bob@example.com, finance@example.com" in html
    assert "Alert when Total paid · total_paid is above 10000 · Not checked yet" in html


def test_an_alert_needs_a_panel_of_this_report_and_a_threshold(report, owner, owner_client):
    other = make_claims_report(owner, slug="other")
    schedule = make_schedule(report)
    foreign = other.panels.first()
    response = owner_client.post(
        "/reports/claims/schedules/alerts/add",
        {"schedule": schedule.pk, "panel": foreign.pk, "column": "total_paid", "condition": "above"},
    )
    [text] = said(response)
    assert "Panel: Select a valid choice" in text
    assert not Alert.objects.exists()


def test_the_owner_runs_a_schedule_now_and_sees_it_in_the_history(report, owner, owner_client, smtp):
    schedule = make_schedule(report)
    make_subscription(schedule, owner)
    response = owner_client.post(f"/reports/claims/schedules/{schedule.pk}/run")
    run = Run.objects.get()
    assert said(response) == [f"Run {run.pk} queued; its outcome shows in the history below."]
    work()
    smtp.wait_for(1)
    work()
    html = owner_client.get("/reports/claims/schedules/").content.decode()
    assert f'data-run="{run.pk}" data-status="done"' in html
    assert "E-mail (subscription) to alice@example.com: sent" in html


def test_the_owner_removes_a_schedule_with_what_hangs_on_it(report, owner, owner_client):
    schedule = make_schedule(report)
    make_subscription(schedule, owner)
    make_alert(schedule, owner, threshold=1)
    response = owner_client.post(f"/reports/claims/schedules/schedule/{schedule.pk}/remove")
    assert said(response) == ["The schedule was removed."]
    assert not Schedule.objects.exists() and not Subscription.objects.exists() and not Alert.objects.exists()
    again = owner_client.post(f"/reports/claims/schedules/schedule/{schedule.pk}/remove")
    assert said(again)[-1:] == ["That schedule was already gone."]


def test_a_pdf_from_the_page_is_queued_polled_and_downloaded(report, member_client, outsider_client, owner_client):
    response = member_client.post("/reports/claims/pdf/")
    assert response.status_code == 202
    queued = response.json()
    assert queued["status"] == "queued" and queued["pdf_url"] is None
    assert member_client.get(queued["status_url"]).status_code == 202

    work()
    done = member_client.get(queued["status_url"])
    assert done.status_code == 200 and done.json()["status"] == "done"
    pdf = member_client.get(done.json()["pdf_url"])
    assert pdf["Content-Type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "6,551" in text and "4,321" in text  # as the page formats them
    # Only the person who asked may read it.
    assert owner_client.get(queued["status_url"]).status_code == 404
    assert outsider_client.get(done.json()["pdf_url"]).status_code == 404
    assert outsider_client.post("/reports/claims/pdf/").status_code == 403


def test_the_owner_is_told_when_panels_forget_a_refresh_before_the_next_one(report, owner_client):
    schedule = make_schedule(report, interval_minutes=60)  # the panels keep results 300 s
    html = owner_client.get("/reports/claims/schedules/").content.decode()
    assert "Panels keep a result 300 s (their cache TTL), less than the time between runs" in html
    for panel in report.panels.all():  # edited as the admin does (save), which every process sees
        panel.cache_ttl = 3600
        panel.save()
    schedule.save()
    assert "data-ttl-warning" not in owner_client.get("/reports/claims/schedules/").content.decode()


def test_a_double_clicked_schedule_is_saved_once(report, owner_client):
    posted = {"kind": "interval", "interval_minutes": "30", "timezone": "UTC", "filters": ""}
    owner_client.post("/reports/claims/schedules/add", posted)
    again = owner_client.post("/reports/claims/schedules/add", posted)
    assert said(again)[-1] == (
        "The schedule was not saved. Form: This report already has a schedule at these times with these filters."
    )
    assert Schedule.objects.count() == 1


def test_a_double_clicked_run_now_queues_one_run(report, owner_client):
    schedule = make_schedule(report)
    owner_client.post(f"/reports/claims/schedules/{schedule.pk}/run")
    again = owner_client.post(f"/reports/claims/schedules/{schedule.pk}/run")
    run = Run.objects.get()
    assert said(again)[-1] == f"Run {run.pk} of this schedule is queued already; it has not started yet."


def test_a_pdf_whose_worker_died_is_shown_failed_not_polled_forever(report, member, member_client, settings):
    import datetime

    from django.utils import timezone

    settings.SCHEDULES_RUN_LOST_AFTER = 60
    status_url = member_client.post("/reports/claims/pdf/").json()["status_url"]
    # A worker took it and was killed: nothing will ever finish it.
    Run.objects.update(status=Run.Status.RUNNING, started_at=timezone.now() - datetime.timedelta(minutes=2))
    answer = member_client.get(status_url)
    assert answer.status_code == 200
    assert answer.json()["status"] == "failed"
    assert answer.json()["error"].startswith("No result 60 s after it started: its worker stopped.")
