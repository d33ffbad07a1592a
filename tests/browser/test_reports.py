from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.reports.conftest import make_filter, make_panel, make_report
from tests.reports.gate import GATED_SQL, closed_gate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_report(page, server_url: str, slug: str, query: str = "") -> None:
    page.goto(f"{server_url}/reports/{slug}/{query}")


def test_it_shows_every_panel_of_a_sixteen_panel_report_from_the_pages_own_response(
    signed_in_page, server_url, owner, analysts
):
    report = make_report(owner, groups=[analysts], slug="sixteen")
    for i in range(8):
        make_panel(report, f"SELECT pg_sleep(0.3), {i} AS n", title=f"Postgres {i}")
        make_panel(report, f"SELECT SYSTEM$WAIT(0.3) AS W, {i} AS N", source="snowflake", title=f"Snowflake {i}")
    page = signed_in_page
    requests: list[str] = []
    page.on(
        "request",
        lambda request: requests.append(request.url) if request.resource_type in {"document", "fetch"} else None,
    )
    open_report(page, server_url, "sixteen")
    expect(page.locator(".panel.done")).to_have_count(16, timeout=20_000)
    # Each result sits in its own slot, in the layout's order; nothing is left below the panels.
    for i in range(8):
        panel = page.locator(".panel", has=page.locator("h2", has_text=f"Postgres {i}"))
        assert panel.locator("td").nth(1).inner_text() == str(i)
    assert page.locator("[data-arrival]").count() == 0
    assert page.locator(".panel table.data").count() == 16
    # No request of its own per panel, no second stream (the schedules section loads apart).
    panel_requests = [url for url in requests if "/schedules/" not in url]
    assert panel_requests == [f"{server_url}/reports/sixteen/"]
    assert not page.errors


def test_it_shows_every_panel_without_javascript_in_the_order_they_finished(
    browser, server_url, member, owner, analysts
):
    from django.test import Client

    report = make_report(owner, groups=[analysts], slug="nojs")
    make_panel(report, GATED_SQL, title="Slow")
    make_panel(report, "SELECT 'fine' AS result", title="Fine")
    make_panel(report, "SELECT 1 / 0", title="Broken")
    client = Client()
    client.force_login(member)
    context = browser.new_context(java_script_enabled=False)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server_url}])
    page = context.new_page()
    with closed_gate() as gate:
        # "Slow" waits at the gate, so it finishes last whatever the machine's speed.
        page.goto(f"{server_url}/reports/nojs/", wait_until="commit")
        expect(page.locator("[data-arrival]")).to_have_count(2, timeout=20_000)
        gate.commit()
    expect(page.locator("[data-arrival]")).to_have_count(3, timeout=20_000)
    arrivals = page.locator("[data-arrival]")
    assert sorted(arrivals.nth(i).locator("h2").inner_text() for i in range(2)) == ["Broken", "Fine"]
    assert arrivals.nth(2).locator("h2").inner_text() == "Slow"
    assert (
        "fine" in page.locator("[data-arrival]", has=page.locator("h2", has_text="Fine")).locator("table").inner_text()
    )
    broken = page.locator("[data-arrival]", has=page.locator("h2", has_text="Broken")).inner_text()
    assert "failed on the database" in broken and "Reference" in broken  # an analyst sees no SQL error
    context.close()


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
    # An analyst sees a plain sentence and a reference; staff see the database's message.
    broken = panels["Broken"].inner_text()
    assert "The report’s query failed on the database" in broken and "Reference" in broken
    assert 'relation "no_such_table" does not exist' not in broken


def test_it_changes_a_filter_and_keeps_it_in_the_url(signed_in_page, server_url, owner, analysts):
    report = make_report(owner, groups=[analysts], slug="filtered")
    make_filter(report, "who", default="nobody")
    make_panel(report, "SELECT %(who)s::text AS who", title="Who", visualization="table")
    make_panel(report, "SELECT length(%(who)s::text) AS letters", title="Letters", visualization="number")
    page = signed_in_page
    open_report(page, server_url, "filtered")
    expect(page.locator(".panel.done")).to_have_count(2, timeout=20_000)
    assert "nobody" in page.locator(".panel", has=page.locator("h2", has_text="Who")).inner_text()
    page.evaluate("window.__sameDocument = true")
    page.fill("input[name=who]", "Ada Lovelace")
    page.click("button[type=submit]:has-text('Apply')")
    page.wait_for_url("**/reports/filtered/?who=Ada+Lovelace")
    expect(page.locator(".panel.done")).to_have_count(2, timeout=20_000)
    assert "Ada Lovelace" in page.locator(".panel", has=page.locator("h2", has_text="Who")).inner_text()
    assert (
        "12" in page.locator(".panel", has=page.locator("h2", has_text="Letters")).locator(".big-number").inner_text()
    )
    assert page.evaluate("window.__sameDocument") is True  # the panels changed, the page did not reload
    export = page.locator(".panel", has=page.locator("h2", has_text="Who")).locator("a", has_text="CSV")
    assert export.get_attribute("href").endswith("/export.csv?who=Ada+Lovelace")
    page.go_back()
    page.wait_for_url("**/reports/filtered/")
    expect(page.locator(".panel.done")).to_have_count(2, timeout=20_000)
    assert "nobody" in page.locator(".panel", has=page.locator("h2", has_text="Who")).inner_text()
    assert not page.errors


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
