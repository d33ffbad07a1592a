"""The report list: search, tags, favourites per user, and each user's recent runs."""

from __future__ import annotations

import re

import pytest

from reports.models import Favourite, QueryLog, Tag
from tests.reports.conftest import make_filter, make_panel, make_report


@pytest.fixture
def reports(owner, analysts):
    claims = make_report(owner, groups=[analysts], slug="claims", title="Claims overview")
    activity = make_report(owner, groups=[analysts], slug="activity", title="Fanout activity", description="Panel runs")
    make_report(owner, slug="private", title="Private claims")  # shared with nobody
    finance = Tag.objects.create(name="Finance", slug="finance")
    claims.tags.add(finance)
    return {"claims": claims, "activity": activity}


def titles(html: str) -> list[str]:
    return re.findall(r'<li data-report-card="[^"]+"[^>]*>\s*<div class="card-head">\s*<h2><a [^>]*>([^<]+)</a>', html)


def test_it_searches_titles_descriptions_and_tags_of_shared_reports_only(reports, member_client):
    assert titles(member_client.get("/reports/").content.decode()) == ["Claims overview", "Fanout activity"]
    assert titles(member_client.get("/reports/?q=claims").content.decode()) == ["Claims overview"]
    assert titles(member_client.get("/reports/?q=panel+RUNS").content.decode()) == ["Fanout activity"]
    assert titles(member_client.get("/reports/?q=finance").content.decode()) == ["Claims overview"]
    assert "No report matches “nothing”" in member_client.get("/reports/?q=nothing").content.decode()


def test_it_lists_the_reports_of_a_tag(reports, member_client):
    html = member_client.get("/reports/?tag=finance").content.decode()
    assert titles(html) == ["Claims overview"]
    assert '<a class="tag" href="?tag=finance" aria-current="true">Finance</a>' in html


def test_it_keeps_favourites_per_user_and_lists_them_first(reports, member, member_client, owner_client):
    response = member_client.post("/reports/activity/favourite", {"on": "1", "next": "/reports/?q=a"})
    assert (response.status_code, response["Location"]) == (302, "/reports/?q=a")
    member_client.post("/reports/activity/favourite", {"on": "1"})  # a double click
    assert list(Favourite.objects.values_list("user__username", "report__slug")) == [("bob", "activity")]
    html = member_client.get("/reports/").content.decode()
    assert titles(html) == ["Fanout activity", "Claims overview"]
    assert 'aria-pressed="true" title="Remove from favourites" aria-label="Favourite: Fanout activity"' in html
    assert titles(owner_client.get("/reports/").content.decode())[0] == "Claims overview"  # alice's own list
    member_client.post("/reports/activity/favourite", {"on": "0"})
    assert not Favourite.objects.exists()


def test_it_refuses_a_favourite_of_a_report_not_shared_and_ignores_a_foreign_next(reports, member_client):
    assert member_client.post("/reports/private/favourite", {"on": "1"}).status_code == 403
    assert member_client.post("/reports/nope/favourite", {"on": "1"}).status_code == 404
    assert member_client.get("/reports/claims/favourite").status_code == 405
    response = member_client.post("/reports/claims/favourite", {"on": "1", "next": "https://evil.example/"})
    assert response["Location"] == "/reports/"
    assert not Favourite.objects.filter(report__slug="private").exists()


def test_it_lists_my_recent_runs_with_a_link_back_to_the_same_filters(reports, member_client, outsider_client):
    report = reports["claims"]
    make_filter(report, "tpa", default="ACME")
    make_panel(report, "SELECT %(tpa)s::text AS tpa", title="TPA")
    make_panel(report, "SELECT 1 AS one", title="One")
    panels = list(report.panels.all())
    for panel in panels:
        member_client.get(f"/reports/claims/panels/{panel.pk}/?tpa=BLUECROSS")
    member_client.get(f"/reports/claims/panels/{panels[0].pk}/")
    html = member_client.get("/reports/").content.decode()
    recent = html[html.index('id="recent-title"') :]
    links = re.findall(r'<li><a href="([^"]+)">Claims overview</a>\s*<span class="filters">([^<]*) ·', recent)
    assert links == [("/reports/claims/?tpa=ACME", "ACME"), ("/reports/claims/?tpa=BLUECROSS", "BLUECROSS")]
    assert QueryLog.objects.filter(query_string="tpa=BLUECROSS").count() == 2
    assert "Reports you open show here" in outsider_client.get("/reports/").content.decode()  # nobody else's
