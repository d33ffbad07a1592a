from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.reports.conftest import make_filter, make_panel, make_report

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_report(page, server_url: str, slug: str, query: str = "") -> None:
    page.goto(f"{server_url}/reports/{slug}/{query}")


def test_it_renders_every_panel_of_an_eight_panel_report_over_one_stream(signed_in_page, server_url, owner, analysts):
    report = make_report(owner, groups=[analysts], slug="eight")
    for i in range(4):
        make_panel(report, f"SELECT pg_sleep(0.3), {i} AS n", title=f"Postgres {i}")
        make_panel(report, f"SELECT SYSTEM$WAIT(0.3) AS W, {i} AS N", source="snowflake", title=f"Snowflake {i}")
    page = signed_in_page
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/stream/" in request.url else None)
    open_report(page, server_url, "eight")
    expect(page.locator(".panel.done")).to_have_count(8, timeout=20_000)
    assert page.locator("[data-report]").get_attribute("data-streaming") == "true"
    assert streams == [f"{server_url}/reports/eight/stream/"]
    assert page.locator(".panel table.data").count() == 8
    assert not page.errors


def test_it_fetches_a_small_reports_panels_in_parallel(signed_in_page, server_url, owner, analysts):
    report = make_report(owner, groups=[analysts], slug="four")
    for i in range(4):
        make_panel(report, f"SELECT pg_sleep(1), {i} AS n", title=f"Panel {i}")
    page = signed_in_page
    started: list[str] = []
    finished: list[str] = []
    order: list[tuple[str, str]] = []
    page.on("request", lambda r: order.append(("start", r.url)) if "/panels/" in r.url else None)
    page.on("requestfinished", lambda r: order.append(("end", r.url)) if "/panels/" in r.url else None)
    open_report(page, server_url, "four")
    expect(page.locator(".panel.done")).to_have_count(4, timeout=20_000)
    # Every panel's request was under way before the first one came back.
    kinds = [kind for kind, _ in order]
    assert kinds[:4] == ["start"] * 4 and kinds.count("end") == 4, order
    del started, finished


def test_it_shows_a_slow_panels_timeout_while_the_others_render(signed_in_page, server_url, owner, analysts):
    report = make_report(owner, groups=[analysts], slug="slow")
    make_panel(report, "SELECT pg_sleep(30)", title="Slow", timeout=1)
    make_panel(report, "SELECT 'fine' AS result", title="Fine")
    make_panel(report, "SELECT * FROM no_such_table", title="Broken")
    page = signed_in_page
    open_report(page, server_url, "slow")
    expect(page.locator(".panel.done, .panel.failed")).to_have_count(3, timeout=20_000)
    panels = {
        title: page.locator(".panel", has=page.locator("h2", has_text=title)) for title in ("Slow", "Fine", "Broken")
    }
    assert "Timed out after 1 s" in panels["Slow"].inner_text()
    assert "fine" in panels["Fine"].locator("table").inner_text()
    assert 'relation "no_such_table" does not exist' in panels["Broken"].inner_text()


def test_it_changes_a_filter_and_keeps_it_in_the_url(signed_in_page, server_url, owner, analysts):
    report = make_report(owner, groups=[analysts], slug="filtered")
    make_filter(report, "who", default="nobody")
    make_panel(report, "SELECT %(who)s::text AS who", title="Who", visualization="table")
    make_panel(report, "SELECT length(%(who)s::text) AS letters", title="Letters", visualization="number")
    page = signed_in_page
    open_report(page, server_url, "filtered")
    expect(page.locator(".panel.done")).to_have_count(2, timeout=20_000)
    assert "nobody" in page.locator(".panel", has=page.locator("h2", has_text="Who")).inner_text()
    page.fill("input[name=who]", "Ada Lovelace")
    page.click("button[type=submit]:has-text('Apply')")
    page.wait_for_url("**/reports/filtered/?who=Ada+Lovelace")
    expect(page.locator(".panel.done")).to_have_count(2, timeout=20_000)
    assert "Ada Lovelace" in page.locator(".panel", has=page.locator("h2", has_text="Who")).inner_text()
    assert (
        "12" in page.locator(".panel", has=page.locator("h2", has_text="Letters")).locator(".big-number").inner_text()
    )


def test_it_refreshes_one_panel_without_reloading_the_others(signed_in_page, server_url, owner, analysts):
    report = make_report(owner, groups=[analysts], slug="refresh")
    make_panel(report, "SELECT clock_timestamp()::text AS at", title="Clock")
    make_panel(report, "SELECT 'steady' AS s", title="Steady")
    page = signed_in_page
    panel_requests: list[str] = []
    open_report(page, server_url, "refresh")
    expect(page.locator(".panel.done")).to_have_count(2, timeout=20_000)
    clock = page.locator(".panel", has=page.locator("h2", has_text="Clock"))
    before = clock.locator("td").inner_text()
    page.on("request", lambda r: panel_requests.append(r.url) if "/panels/" in r.url else None)
    clock.locator("[data-refresh]").click()
    expect(page.locator(".panel.loading")).to_have_count(0)
    clock.locator("text=updated just now").wait_for()
    assert len(panel_requests) == 1 and panel_requests[0].endswith("fresh=1")
    assert clock.locator("td").inner_text() != before
