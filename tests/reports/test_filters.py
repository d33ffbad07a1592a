from __future__ import annotations

import datetime

import pytest
from django.db import connection

from reports import filters
from reports.filters import ListMapping, parse
from reports.models import Filter, QueryLog
from tests.reports.conftest import make_filter, make_panel

pytestmark = pytest.mark.django_db


def test_it_applies_the_defaults_of_filters_the_url_does_not_mention(report):
    period = make_filter(report, "period", Filter.Kind.DATE_RANGE, default="-7d..today")
    amount = make_filter(report, "amount", Filter.Kind.NUMBER, default="10")
    today = filters.today()
    state = parse([period, amount], ListMapping({}))
    assert state.params() == {"period_from": today - datetime.timedelta(days=7), "period_to": today, "amount": 10}
    assert state.shown["period_from"] == [(today - datetime.timedelta(days=7)).isoformat()]
    emptied = parse([period, amount], ListMapping({"amount": ""}))
    assert emptied.params()["amount"] is None
    assert emptied.params()["period_to"] == today


def test_it_tells_an_emptied_multiple_choice_from_an_absent_one(report):
    regions = make_filter(report, "regions", Filter.Kind.MULTI_CHOICE, default="EU,US")
    assert parse([regions], ListMapping({})).params() == {"regions": ["EU", "US"]}
    assert parse([regions], ListMapping({"regions": [""]})).params() == {"regions": []}


def test_it_types_every_kind_of_filter(report):
    items = [
        make_filter(report, "day", Filter.Kind.DATE),
        make_filter(report, "n", Filter.Kind.NUMBER),
        make_filter(report, "x", Filter.Kind.NUMBER),
        make_filter(report, "regions", Filter.Kind.MULTI_CHOICE, options_sql="SELECT 'EU'"),
        make_filter(report, "q", Filter.Kind.TEXT),
    ]
    state = parse(
        items,
        ListMapping({"day": "2026-02-03", "n": "1,200", "x": "2.5", "regions": ["EU", "US"], "q": " hi "}),
        {"regions": [("EU", "Europe"), ("US", "United States")]},
    )
    assert state.is_valid, state.errors
    assert state.params() == {"day": datetime.date(2026, 2, 3), "n": 1200, "x": 2.5, "regions": ["EU", "US"], "q": "hi"}


@pytest.mark.parametrize(
    ("kind", "given", "message"),
    [
        (Filter.Kind.DATE, {"f": "03/02/2026"}, "is not a date"),
        (Filter.Kind.NUMBER, {"f": "12abc"}, "is not a number"),
        (Filter.Kind.NUMBER, {"f": "nan"}, "is not a number"),
        (Filter.Kind.DATE_RANGE, {"f_from": "2026-02-01", "f_to": "2026-01-01"}, "ends before it starts"),
        (Filter.Kind.DATE_RANGE, {"f_from": "2026-02-01", "f_to": ""}, "both ends"),
        (Filter.Kind.TEXT, {"f": "x" * 201}, "At most 200"),
        (Filter.Kind.CHOICE, {"f": "MARS"}, "Not one of the options: MARS"),
    ],
)
def test_it_refuses_values_that_do_not_fit_the_filter(report, kind, given, message):
    item = make_filter(report, "f", kind)
    state = parse([item], ListMapping(given), {"f": [("EARTH", "Earth")]})
    assert message in state.errors["f"]


def test_it_requires_required_filters(report):
    item = make_filter(report, "tpa", required=True)
    assert parse([item], ListMapping({"tpa": ""})).errors == {"tpa": "This filter is required"}


def test_it_shows_filter_errors_and_runs_no_panel(report, member_client):
    make_filter(report, "amount", Filter.Kind.NUMBER)
    panel = report.panels.get()
    page = member_client.get("/reports/claims/?amount=lots")
    assert page.status_code == 400
    assert "“lots” is not a number" in page.content.decode()
    assert "Fix the filters above" in page.content.decode()
    fragment = member_client.get(f"/reports/claims/panels/{panel.pk}/?amount=lots")
    assert fragment.status_code == 400
    api = member_client.get("/api/reports/claims/run?amount=lots")
    assert api.status_code == 400
    assert api.json()["errors"] == {"amount": "“lots” is not a number"}
    assert not QueryLog.objects.exists()  # nothing ran


@pytest.mark.django_db(transaction=True)
def test_it_binds_a_hostile_value_harmlessly_on_both_sources(owner, analysts, member_client):
    from tests.reports.conftest import make_report

    report = make_report(owner, groups=[analysts], slug="inject")
    make_filter(report, "who")
    make_panel(report, "SELECT %(who)s::text AS who", title="pg")
    make_panel(report, "SELECT %(who)s AS WHO", source="snowflake", title="sf")
    hostile = "'; DROP TABLE reports_report; --"
    body = member_client.get("/api/reports/inject/run", {"who": hostile}).json()
    assert [panel["rows"] for panel in body["panels"]] == [[[hostile]], [[hostile]]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM reports_report")
        assert cursor.fetchone() == (1,)


def test_it_lists_choice_options_from_their_query(report, member_client):
    make_filter(
        report,
        "tpa",
        Filter.Kind.CHOICE,
        options_sql="SELECT v, upper(v) FROM (VALUES ('acme'), ('zeta')) AS t(v) ORDER BY 1",
    )
    assert member_client.get("/api/reports/claims/filters/tpa/options").json() == [
        {"value": "acme", "label": "ACME"},
        {"value": "zeta", "label": "ZETA"},
    ]
    page = b"".join(member_client.get("/reports/claims/?tpa=zeta")).decode()  # the page streams
    assert '<option value="zeta" selected>ZETA</option>' in page
