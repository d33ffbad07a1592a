"""One navigation for the site, showing only what the user may open; styled error pages."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.conftest import make_user


def links(html: str) -> list[str]:
    nav = html[html.index('<nav aria-label="Site"') :].split("</nav>")[0]
    return re.findall(r"<a [^>]*>([^<]+)</a>", nav)


def test_it_shows_staff_every_section(owner_client):
    assert links(owner_client.get("/").content.decode()) == [
        "Reports",
        "TPA pipeline",
        "Processing queue",
        "Operations",
        "Admin",
    ]


def test_it_shows_an_analyst_only_the_reports(member_client):
    html = member_client.get("/").content.decode()
    assert links(html) == ["Reports"]
    assert "TPA pipeline" not in html  # no card that leads to a 403


def test_it_shows_the_tpa_pages_to_whoever_may_view_them(db):
    viewer = make_user("dora")
    viewer.user_permissions.add(Permission.objects.get(codename="view_tpa", content_type__app_label="tpa"))
    client = Client()
    client.force_login(viewer)
    assert links(client.get("/reports/").content.decode()) == ["Reports", "TPA pipeline", "Processing queue"]
    assert client.get("/tpa/").status_code == 200


def test_it_marks_the_current_section(owner_client):
    html = owner_client.get("/tpa/queue/").content.decode()
    assert '<a href="/tpa/queue/" aria-current="page">Processing queue</a>' in html
    assert '<a href="/tpa/" aria-current="page">' not in html


def test_it_answers_403_with_a_page_that_says_what_to_do_next(member_client):
    response = member_client.get("/tpa/")
    html = response.content.decode()
    assert response.status_code == 403
    assert "You can’t open this page" in html and "You have no access to TPAs." in html
    assert "/static/css/fanout.css" in html and links(html) == ["Reports"]


def test_it_answers_404_in_the_sites_layout(member_client):
    for path in ("/reports/no-such-report/", "/no/such/page/"):
        response = member_client.get(path)
        html = response.content.decode()
        assert response.status_code == 404, path
        assert "There is nothing at this address" in html and links(html) == ["Reports"], path


def test_it_shows_the_login_page_without_navigation(client):
    html = client.get("/accounts/login/").content.decode()
    assert links(html) == [] and "/static/css/fanout.css" in html


@pytest.mark.django_db(transaction=True)
async def test_it_answers_an_unknown_address_in_the_sites_layout_on_the_async_path(async_owner_client):
    # No view ran, so no middleware worked out the links: Django renders the page on a thread.
    response = await async_owner_client.get("/no/such/page/")
    html = response.content.decode()
    assert response.status_code == 404
    assert "There is nothing at this address" in html and links(html)[:1] == ["Reports"]
