from __future__ import annotations

import pytest

from tests.reports.conftest import make_filter, make_panel, make_report

pytestmark = pytest.mark.django_db


def test_it_describes_a_report(report, member_client):
    make_filter(report, "period", "date_range", default="-30d..today")
    body = member_client.get("/api/reports/claims").json()
    assert body["slug"] == "claims"
    assert body["filters"][0]["parameters"] == ["period_from", "period_to"]
    assert body["panels"][0]["title"] == "Quick"
    assert body["panels"][0]["visualization"] == "table"


def test_it_runs_a_whole_report(report, member_client):
    make_panel(report, "SELECT %(n)s::int * 2 AS doubled", title="Doubled")
    make_filter(report, "n", "number", default="21")
    body = member_client.get("/api/reports/claims/run").json()
    assert body["ok"] is True and body["parameters"] == {"n": 21}
    assert [panel["rows"] for panel in body["panels"]] == [[["ok", 42]], [[42]]]
    assert body["panels"][1]["cache_hit"] is False


@pytest.mark.django_db(transaction=True)
def test_it_answers_504_for_a_panel_that_times_out(owner, analysts, member_client):
    report = make_report(owner, groups=[analysts], slug="slow")
    panel = make_panel(report, "SELECT pg_sleep(30)", timeout=1)
    response = member_client.get(f"/api/reports/slow/panels/{panel.pk}/run")
    assert response.status_code == 504
    assert response.json()["error"]["message"] == "timed out after 1 s"


def test_it_runs_one_panel_fresh(report, member_client):
    panel = report.panels.get()
    url = f"/api/reports/claims/panels/{panel.pk}/run"
    assert member_client.get(url).json()["cache_hit"] is False
    assert member_client.get(url).json()["cache_hit"] is True
    assert member_client.get(url + "?fresh=true").json()["cache_hit"] is False


def test_it_publishes_the_reports_endpoints_in_the_openapi_document(member_client):
    paths = member_client.get("/api/openapi.json").json()["paths"]
    assert {
        "/api/reports/",
        "/api/reports/{slug}",
        "/api/reports/{slug}/run",
        "/api/reports/{slug}/panels/{panel_id}/run",
        "/api/reports/{slug}/filters/{name}/options",
    } <= set(paths)


def test_it_limits_whole_report_runs_per_user(report, member, member_client, settings):
    from project import ratelimit

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "report-run": "2/h"}
    try:
        assert member_client.get("/api/reports/claims/run").status_code == 200
        assert member_client.get("/api/reports/claims/run").status_code == 200
        refused = member_client.get("/api/reports/claims/run")
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) > 0
        assert member_client.get("/reports/claims/stream/").status_code == 429  # the page's way in counts too
    finally:
        ratelimit.reset("report-run", f"user:{member.pk}")
    assert member_client.get("/api/reports/claims/run").status_code == 200
