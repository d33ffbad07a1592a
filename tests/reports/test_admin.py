from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from reports.models import Panel, QueryLog, Report
from tests.reports.conftest import make_filter, make_panel, make_report, make_source

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, owner):
    owner.is_superuser = True
    owner.save()
    client.force_login(owner)
    return client


def report_form(owner, sql: str, filter_name: str = "tpa", **panel: str) -> dict[str, str]:
    source = make_source()
    return {
        "slug": "new",
        "title": "New",
        "description": "",
        "owner": str(owner.pk),
        "filters-TOTAL_FORMS": "1",
        "filters-INITIAL_FORMS": "0",
        "filters-0-name": filter_name,
        "filters-0-label": "TPA",
        "filters-0-kind": "text",
        "filters-0-order": "0",
        "panels-TOTAL_FORMS": "1",
        "panels-INITIAL_FORMS": "0",
        "panels-0-title": "P",
        "panels-0-sql": sql,
        "panels-0-source": str(source.pk),
        "panels-0-visualization": "table",
        "panels-0-width": "half",
        "panels-0-order": "0",
        "panels-0-stale_while_revalidate": "0",
        **panel,
    }


def test_it_saves_a_read_only_query_whose_parameters_are_filters(superuser_client, owner):
    response = superuser_client.post("/admin/reports/report/add/", report_form(owner, "SELECT %(tpa)s::text AS t"))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Panel.objects.get().sql == "SELECT %(tpa)s::text AS t"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM reports_report", "DELETE may not run, only a query"),
        (
            "WITH gone AS (DELETE FROM reports_report RETURNING *) SELECT * FROM gone",
            "DELETE may not run inside a query",
        ),
        ("SELECT 1; SELECT 2", "one statement only; this text has 2"),
        ("SELECT %(region)s", "No filter provides region"),
        ("SELEC 1", "does not parse"),
    ],
)
def test_it_refuses_sql_that_is_not_one_read_only_query_over_the_filters(superuser_client, owner, sql, message):
    response = superuser_client.post("/admin/reports/report/add/", report_form(owner, sql))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Panel.objects.exists()


def test_it_previews_a_panel_with_the_filter_defaults(superuser_client, owner):
    report = make_report(owner)
    make_filter(report, "n", "number", default="20")
    panel = make_panel(report, "SELECT %(n)s::int + 1 AS answer")
    html = superuser_client.get(f"/admin/reports/panel/{panel.pk}/change/").content.decode()
    assert "1 row in" in html and "<td>21</td>" in html
    assert QueryLog.objects.get().trigger == "admin"


def test_it_lets_staff_browse_the_query_log(superuser_client, report):
    superuser_client.get(f"/reports/claims/panels/{report.panels.get().pk}/")
    html = superuser_client.get("/admin/reports/querylog/").content.decode()
    assert "1 query log" in html.lower() or "querylog" in html


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 'unterminated", "a quote, string or comment is not closed"),
        ('SELECT "unterminated', "a quote, string or comment is not closed"),
        ("SELECT $$unterminated", "a quote, string or comment is not closed"),
        ("SELECT 1 /* unterminated", "a quote, string or comment is not closed"),
        ("SELECT " + "(" * 5000 + "1" + ")" * 5000, "nested too deeply to be checked"),
    ],
)
def test_it_explains_sql_the_parser_gives_up_on_instead_of_failing(superuser_client, owner, sql, message):
    response = superuser_client.post("/admin/reports/report/add/", report_form(owner, sql))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Panel.objects.exists()


def test_it_explains_a_bad_options_query_in_the_filter_inline(superuser_client, owner):
    source = make_source("postgres")
    form = report_form(owner, "SELECT 1 AS one")
    form.update(
        {
            "filters-0-kind": "choice",
            "filters-0-options_source": str(source.pk),
            "filters-0-options_sql": "SELECT 1, 1; COMMIT; UPDATE auth_user SET is_superuser = true",
        }
    )
    response = superuser_client.post("/admin/reports/report/add/", form)
    assert response.status_code == 200
    assert "Report queries are one statement only; this text has 3." in response.content.decode()
    assert not Report.objects.exists()
    assert list(User.objects.filter(is_superuser=True).values_list("username", flat=True)) == ["alice"]
