"""The analyst's experience in Chromium: numbers that read right, the chart kinds, one site
navigation, a styled 403, the dark theme, search and favourites, and axe-core on every page kind."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.db import connections
from playwright.sync_api import expect

from reports.models import Favourite, Panel
from tests.browser.conftest import axe_violations, signed_in_context
from tests.reports.conftest import make_panel, make_report
from tests.tpa.conftest import make_tpa  # noqa: F401 (fixture)
from tpa.models import FileStatus, IngestionFile, PipelineRun, PipelineStep, RunStatus, Step, StepStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOLLARS = r"^\$\d{1,3}(,\d{3})*\.\d{2}$"


def panel(page, title: str):
    return page.locator(".panel").filter(has=page.get_by_role("heading", name=title, exact=True))


def wait_for_panels(page, count: int) -> None:
    expect(page.locator(".panel.done, .panel.failed")).to_have_count(count, timeout=30_000)


def nav_links(page) -> list[str]:
    return page.locator("nav.site-nav a").all_inner_texts()


def on_a_thread(function, *args):
    """Playwright's loop runs in the test's thread, and the command uses async_to_sync."""

    def run():
        try:
            return function(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture(scope="session")
def deployed(django_db_setup, django_db_blocker) -> None:
    """tests/tpa's fixture, on a thread: this module's browser may already be running."""
    with django_db_blocker.unblock():
        on_a_thread(call_command, "snowflake_deploy")


@pytest.fixture
def claims_report(owner, analysts, deployed):
    # The claims report reads the pipeline's gold layer, which the demo TPAs' runs fill.
    on_a_thread(call_command, "load_demo_tpas", "--rows", "60")
    on_a_thread(call_command, "load_demo_reports")
    return Panel.objects.filter(report__slug="claims-overview").count()


@pytest.fixture
def quick_report(owner, analysts):
    report = make_report(owner, groups=[analysts], slug="claims")
    make_panel(report, "SELECT 'ok' AS status, 42 AS answer", title="Quick")
    return report


def test_it_shows_the_demo_claims_report_with_formatted_numbers_and_labels(
    browser, server_url, member, claims_report
) -> None:
    context = signed_in_context(browser, server_url, member, locale="en-US")
    page = context.new_page()
    page.goto(f"{server_url}/reports/claims-overview/")
    wait_for_panels(page, claims_report)

    total = panel(page, "Total paid")
    assert re.match(DOLLARS, total.locator(".big-number .value").inner_text())
    assert total.locator(".big-number .muted").count() == 0  # the title already says "Total paid"
    average = panel(page, "Average claim")
    assert average.locator(".big-number .muted").inner_text() == "Average paid per claim"
    assert re.match(DOLLARS, average.locator(".big-number .value").inner_text())
    assert re.match(r"^[▲▼=] ", panel(page, "Claims in the last 30 days").locator(".compare .change").inner_text())

    largest = panel(page, "Largest claims")
    headers = largest.locator("thead th").all_inner_texts()
    assert headers == ["Claim", "TPA", "Member", "Service date", "Paid", "Status"]
    first_row = largest.locator("tbody tr").first.locator("td")
    assert re.match(DOLLARS, first_row.nth(4).inner_text())
    assert first_row.nth(4).evaluate("cell => getComputedStyle(cell).textAlign") == "right"
    assert first_row.nth(1).evaluate("cell => getComputedStyle(cell).textAlign") == "left"
    assert "," not in first_row.nth(0).inner_text()  # an id reads without separators

    by_month = panel(page, "Paid by month")
    expect(by_month.locator(".partial-note")).to_be_visible()
    assert by_month.locator("canvas").get_attribute("data-drawn") == "line"
    assert by_month.locator("canvas").evaluate("c => Chart.getChart(c).data.labels.at(-1)").endswith("(partial)")
    assert axe_violations(page) == []  # with tables long enough to scroll
    context.close()

    # The browser's language picks the separators (Django's localisation).
    context = signed_in_context(browser, server_url, member, locale="de-DE")
    page = context.new_page()
    page.goto(f"{server_url}/reports/claims-overview/")
    wait_for_panels(page, claims_report)
    assert re.match(r"^\$\d{1,3}(\.\d{3})*,\d{2}$", panel(page, "Total paid").locator(".value").inner_text())
    context.close()


def test_it_draws_each_new_chart_kind(browser, server_url, owner, analysts, member) -> None:
    report = make_report(owner, groups=[analysts], slug="charts")
    parts = "SELECT * FROM (VALUES ('North', 3), ('South', 5), ('East', 2)) AS t(region, claims)"
    make_panel(report, parts, title="Pie", visualization="pie")
    make_panel(report, parts, title="Donut", visualization="donut")
    months = "SELECT g AS month, g * 10 AS paid, g * 4 AS denied FROM generate_series(1, 6) AS g"
    make_panel(report, months, title="Area", visualization="area", chart_x="month")
    make_panel(report, months, title="Stacked", visualization="stacked")
    make_panel(
        report,
        "SELECT g * 1.5 AS amount, g * g AS days FROM generate_series(1, 9) AS g",
        title="Scatter",
        visualization="scatter",
    )
    make_panel(report, months, title="Partial bar", visualization="bar", chart_y="paid", partial_last=True)
    make_panel(report, "SELECT 120 AS claims, 100 AS previous", title="Compared", visualization="number")
    context = signed_in_context(browser, server_url, member)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server_url}/reports/charts/")
    wait_for_panels(page, 7)

    def drawn(title: str) -> dict:
        return (
            panel(page, title)
            .locator("canvas")
            .evaluate(
                """c => { const chart = Chart.getChart(c); return {type: chart.config.type,
                 sets: chart.data.datasets.length, fill: chart.data.datasets[0].fill,
                 stacked: Boolean(chart.options.scales && chart.options.scales.y && chart.options.scales.y.stacked),
                 last: chart.data.labels ? chart.data.labels.at(-1) : null} }"""
            )
        )

    assert drawn("Pie")["type"] == "pie"
    assert drawn("Donut")["type"] == "doughnut"
    area = drawn("Area")
    assert (area["type"], area["fill"], area["sets"], area["stacked"]) == ("line", "stack", 2, True)
    assert (drawn("Stacked")["type"], drawn("Stacked")["stacked"]) == ("bar", True)
    assert drawn("Scatter")["type"] == "scatter"
    partial = drawn("Partial bar")
    assert (partial["type"], partial["sets"], partial["last"]) == ("bar", 1, "6 (partial)")
    compared = panel(page, "Compared").locator(".compare")
    assert compared.locator(".change").inner_text() == "▲ 20.0%"
    assert "up" in compared.get_attribute("class")
    assert compared.locator(".change").evaluate("e => getComputedStyle(e).color") == "rgb(19, 115, 51)"
    assert errors == []
    context.close()


def test_it_follows_the_systems_dark_theme(browser, server_url, member, quick_report) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        context = signed_in_context(browser, server_url, member, color_scheme=scheme)
        page = context.new_page()
        page.goto(f"{server_url}/reports/claims/")
        wait_for_panels(page, 1)
        backgrounds[scheme] = (
            page.evaluate("getComputedStyle(document.body).backgroundColor"),
            page.locator(".panel").first.evaluate("e => getComputedStyle(e).backgroundColor"),
        )
        if scheme == "dark":
            assert axe_violations(page) == []  # contrast holds in the dark palette too
        context.close()
    assert backgrounds == {
        "light": ("rgb(246, 248, 251)", "rgb(255, 255, 255)"),
        "dark": ("rgb(18, 22, 28)", "rgb(27, 32, 41)"),
    }


@pytest.fixture
def tpa_run(make_tpa, owner):  # noqa: F811
    tpa = make_tpa()
    file = IngestionFile.objects.create(
        tpa=tpa,
        original_name="claims.csv",
        stage_path=f"{tpa.code}/2026/12/01/claims.csv",
        size=100,
        sha256="0" * 64,
        row_count=12,
        status=FileStatus.FAILED,
        error="row 3: bad date",
    )
    run = PipelineRun.objects.create(tpa=tpa, status=RunStatus.SUCCEEDED, triggered_by=owner)
    run.files.add(file)
    for position, name in enumerate([Step.BRONZE, Step.SILVER, Step.GOLD]):
        PipelineStep.objects.create(run=run, name=name, position=position, status=StepStatus.SUCCEEDED, rows=12)
    return run


def test_it_shows_the_site_navigation_on_every_page(browser, server_url, owner, member, quick_report, tpa_run) -> None:
    staff = ["Reports", "TPA pipeline", "Processing queue", "Operations", "Admin"]
    code = tpa_run.tpa.code
    context = signed_in_context(browser, server_url, owner)
    page = context.new_page()
    for path in (
        "/",
        "/reports/",
        "/reports/claims/",
        "/tpa/",
        "/tpa/queue/",
        f"/tpa/{code}/",
        f"/tpa/{code}/runs/{tpa_run.pk}/",
        "/ops/",
        "/reports/no-such-report/",
    ):
        page.goto(server_url + path)
        assert nav_links(page) == staff, path
    page.goto(f"{server_url}/tpa/queue/")
    assert page.locator("nav.site-nav a[aria-current=page]").all_inner_texts() == ["Processing queue"]
    context.close()

    context = signed_in_context(browser, server_url, member)
    page = context.new_page()
    for path in ("/", "/reports/", "/reports/claims/", "/tpa/", "/ops/"):
        page.goto(server_url + path)
        assert nav_links(page) == ["Reports"], path  # only what an analyst may open
    page.goto(server_url + "/")
    assert page.locator("main .cards a").all_inner_texts() == ["Reports"]  # no card that leads to a 403
    context.close()


def test_it_shows_a_styled_403_that_says_what_to_do(browser, server_url, member) -> None:
    context = signed_in_context(browser, server_url, member)
    page = context.new_page()
    response = page.goto(f"{server_url}/tpa/")
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You can’t open this page")
    expect(page.locator("main")).to_contain_text("You have no access to TPAs.")
    expect(page.locator("main")).to_contain_text("Ask the report’s owner or an administrator")
    assert page.locator(".problem").evaluate("e => getComputedStyle(e).borderRadius") == "8px"  # the site's CSS
    assert nav_links(page) == ["Reports"]
    assert axe_violations(page) == []
    context.close()


def test_it_searches_reports_and_keeps_favourites(browser, server_url, owner, analysts, member) -> None:
    make_report(owner, groups=[analysts], slug="claims", title="Claims overview")
    make_report(owner, groups=[analysts], slug="activity", title="Fanout activity", description="Panel runs")
    make_report(owner, groups=[analysts], slug="zeta", title="Zeta denials")
    context = signed_in_context(browser, server_url, member)
    page = context.new_page()
    page.goto(f"{server_url}/reports/")
    cards = page.locator(".report-list > li h2")
    assert cards.all_inner_texts() == ["Claims overview", "Fanout activity", "Zeta denials"]

    page.get_by_role("searchbox", name="Search reports").fill("panel runs")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/reports/?q=panel+runs")
    assert cards.all_inner_texts() == ["Fanout activity"]

    page.goto(f"{server_url}/reports/")
    page.get_by_role("button", name="Favourite: Zeta denials").click()
    page.wait_for_load_state()
    expect(cards.first).to_have_text("Zeta denials")  # favourites first
    expect(page.get_by_role("button", name="Favourite: Zeta denials")).to_have_attribute("aria-pressed", "true")
    assert list(Favourite.objects.values_list("user__username", "report__slug")) == [("bob", "zeta")]
    assert axe_violations(page) == []
    context.close()


def test_it_finds_no_serious_accessibility_problem_on_any_page_kind(
    browser, server_url, owner, member, quick_report, tpa_run
) -> None:
    found: dict[str, list] = {}

    def check(context, name: str, path: str, wait=None) -> None:
        page = context.new_page()
        page.goto(server_url + path)
        if wait:
            wait(page)
        found[name] = axe_violations(page)
        page.close()

    anonymous = browser.new_context()
    check(anonymous, "login", "/accounts/login/")
    anonymous.close()
    analyst = signed_in_context(browser, server_url, member)
    check(analyst, "report list", "/reports/")
    check(analyst, "report", "/reports/claims/", wait=lambda page: wait_for_panels(page, 1))
    analyst.close()
    staff = signed_in_context(browser, server_url, owner)
    code = tpa_run.tpa.code
    check(staff, "TPA list", "/tpa/")
    check(staff, "TPA detail", f"/tpa/{code}/")
    check(staff, "run", f"/tpa/{code}/runs/{tpa_run.pk}/")
    check(staff, "queue", "/tpa/queue/")
    check(staff, "ops", "/ops/")
    staff.close()
    failures = {name: violations for name, violations in found.items() if violations}
    assert not failures, json.dumps(failures, indent=1, ensure_ascii=False)


def test_it_keeps_the_operations_page_current(browser, server_url, owner, quick_report) -> None:
    context = signed_in_context(browser, server_url, owner)
    page = context.new_page()
    page.goto(f"{server_url}/reports/claims/")
    wait_for_panels(page, 1)  # a run for the last hour's trend
    page.goto(f"{server_url}/ops/")
    expect(page.locator("#trends tr[data-trend=postgres] svg polyline")).to_have_count(1)
    stamp = page.locator("[data-updated]").get_attribute("datetime")
    # The page fetches its figures again by itself (every 15 s), in place.
    expect(page.locator("[data-live]")).to_have_attribute("data-refreshed", "1", timeout=45_000)
    assert page.locator("[data-updated]").get_attribute("datetime") != stamp
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    context.close()
