from __future__ import annotations

import pytest
import redis
from django.test import Client

from project.localcache import AUTH, redis_url
from tests.reports.conftest import make_panel, make_report

pytestmark = pytest.mark.django_db


def urls(report) -> list[str]:
    panel = report.panels.get()
    base = f"/reports/{report.slug}"
    return [
        f"{base}/",
        f"{base}/panels/{panel.pk}/",
        f"{base}/stream/",
        f"{base}/panels/{panel.pk}/export.csv",
        f"{base}/panels/{panel.pk}/export.xlsx",
        f"/api/reports/{report.slug}",
        f"/api/reports/{report.slug}/run",
        f"/api/reports/{report.slug}/panels/{panel.pk}/run",
    ]


def test_it_lists_only_the_reports_a_user_may_see(owner, member, outsider, analysts, member_client, outsider_client):
    shared = make_report(owner, groups=[analysts], slug="shared", title="Shared with analysts")
    make_report(owner, slug="private", title="Owner only")
    member_page = member_client.get("/reports/").content.decode()
    assert "Shared with analysts" in member_page and "Owner only" not in member_page
    assert "No reports are shared with you" in outsider_client.get("/reports/").content.decode()
    assert [item["slug"] for item in member_client.get("/api/reports/").json()] == [shared.slug]
    assert outsider_client.get("/api/reports/").json() == []


def test_it_shows_the_owner_every_report_of_theirs(owner_client, report):
    make_report(report.owner, slug="private")
    assert {item["slug"] for item in owner_client.get("/api/reports/").json()} == {"claims", "private"}


def test_it_answers_403_to_the_outsider_on_page_api_and_exports(report, outsider_client):
    for url in urls(report):
        response = outsider_client.get(url)
        assert response.status_code == 403, url
        assert b"SELECT" not in response.content, url


def test_it_answers_404_for_a_report_that_does_not_exist(member_client):
    assert member_client.get("/reports/no-such-report/").status_code == 404
    assert member_client.get("/api/reports/no-such-report/run").status_code == 404


def test_it_serves_a_group_member_the_page_api_and_exports(report, member_client):
    for url in urls(report):
        response = member_client.get(url)
        assert response.status_code == 200, url


def test_it_answers_404_for_a_panel_of_another_report(report, owner, member_client):
    other = make_report(owner, slug="other")
    foreign = make_panel(other, "SELECT 'secret' AS s")
    assert member_client.get(f"/reports/{report.slug}/panels/{foreign.pk}/").status_code == 404
    assert member_client.get(f"/reports/{report.slug}/panels/{foreign.pk}/export.csv").status_code == 404


def test_it_asks_anonymous_visitors_to_sign_in(report):
    assert Client().get("/reports/claims/").status_code == 302
    assert Client().get("/api/reports/").status_code == 401


def test_it_answers_403_at_once_when_the_report_is_shared_no_longer(report, analysts, member_client):
    assert member_client.get(f"/reports/{report.slug}/").status_code == 200  # now kept in the process
    report.groups.remove(analysts)
    for url in urls(report):
        assert member_client.get(url).status_code == 403, url


@pytest.mark.django_db(transaction=True)  # the shared generation moves after the commit, as in production
def test_it_answers_403_at_once_when_the_member_leaves_the_group(report, analysts, member, member_client):
    assert member_client.get(f"/api/reports/{report.slug}").status_code == 200
    member.groups.remove(analysts)
    for url in urls(report):
        assert member_client.get(url).status_code == 403, url


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(redis_url() is None, reason="without Redis nothing is kept in the process")
def test_it_reads_access_again_when_another_process_changed_a_membership(report, analysts, member, member_client):
    assert member_client.get(f"/api/reports/{report.slug}").status_code == 200
    # Another worker removed bob from the group: no signal here, only the generation it moved.
    member.groups.through.objects.filter(user=member).delete()
    redis.Redis.from_url(str(redis_url())).incr(AUTH.key)
    assert member_client.get(f"/api/reports/{report.slug}").status_code == 403
