from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import redis

from project.localcache import redis_url
from project.sources.postgres import conninfo_for
from reports.models import Filter, Panel, QueryLog
from reports.services import REPORTS
from tests.reports.conftest import make_filter, make_panel, make_report
from tests.reports.gate import GATED_SQL, closed_gate

pytestmark = pytest.mark.django_db


def page_chunks(response) -> list[str]:
    """The parts of a streamed page as the server sent them (sync client)."""
    assert response.streaming and response["Content-Type"] == "text/html; charset=utf-8"
    return [chunk.decode() for chunk in response]


def test_it_sends_the_layout_then_each_panel_in_the_same_response(report, member_client):
    panel = report.panels.get()
    page = member_client.get("/reports/claims/")
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    layout, *arrivals = page_chunks(page)
    # The layout: every slot, and what reloads and refreshes use later.
    assert f'id="panel-{panel.pk}"' in layout and "data-arrival=" not in layout
    assert f'data-url="/reports/claims/panels/{panel.pk}/"' in layout
    assert 'data-stream-url="/reports/claims/stream/"' in layout
    # The page script is in the layout, before the panels arrive; nothing inline (CSP).
    assert layout.rstrip().endswith('<script src="/static/reports/report.js"></script>')
    html = "".join(arrivals)
    assert [int(pk) for pk in re.findall(r'data-arrival="(\d+)"', html)] == [panel.pk]
    assert '<td class="align-right">42</td>' in html and "Quick" in html
    assert arrivals[-1].rstrip().endswith("</html>")  # the last panel comes with the end of the page
    whole = layout + html
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", whole), "inline script"
    assert " style=" not in whole
    assert "/static/vendor/chart.umd.4.6.1.min.js" not in layout  # no panel draws a chart
    entry = QueryLog.objects.get()
    assert (entry.panel_id, entry.trigger, entry.rows) == (panel.pk, "page", 1)


def test_it_keeps_the_page_to_a_few_database_queries(report, member_client, django_assert_max_num_queries):
    for i in range(6):
        make_panel(report, f"SELECT {i}", title=f"P{i}")
    make_filter(report, "q")
    # Session, user, report, panels, filters, who may see it, the query log, and the TPAs the navigation offers.
    with django_assert_max_num_queries(8):
        assert len(page_chunks(member_client.get("/reports/claims/"))) == 1 + 7  # the layout, then each panel
    # Then the session, the user, the report and who may see it come from the process's copies:
    # what is left is the navigation's TPA permission and the query log.
    with django_assert_max_num_queries(2):
        assert len(page_chunks(member_client.get("/reports/claims/"))) == 1 + 7


def test_it_shows_an_edited_panel_on_the_next_load(report, member_client):
    panel = report.panels.get()
    assert "Quick" in "".join(page_chunks(member_client.get("/reports/claims/")))
    panel.title = "Renamed"
    panel.save()
    make_panel(report, "SELECT 'added' AS what", title="Added")
    page = "".join(page_chunks(member_client.get("/reports/claims/")))
    assert "Renamed" in page and "Quick" not in page and "added" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(redis_url() is None, reason="without Redis nothing is kept in the process")
def test_it_reads_the_report_again_when_another_process_changed_it(report, member_client, django_assert_num_queries):
    panel = report.panels.get()
    member_client.get(f"/reports/claims/panels/{panel.pk}/")
    # Saved by another worker: no signal here, only the generation it moved.
    Panel.objects.filter(pk=panel.pk).update(title="Renamed elsewhere", sql="SELECT 'new' AS status")
    redis.Redis.from_url(str(redis_url())).incr(REPORTS.key)
    html = member_client.get(f"/reports/claims/panels/{panel.pk}/").content.decode()
    assert '<td class="align-left">new</td>' in html


def test_it_answers_invalid_filters_with_the_form_and_runs_nothing(report, member_client):
    make_filter(report, "n", Filter.Kind.NUMBER)
    page = member_client.get("/reports/claims/", {"n": "many"})
    assert page.status_code == 400 and not page.streaming
    assert "is not a number" in page.content.decode() and "data-arrival=" not in page.content.decode()
    assert not QueryLog.objects.exists()


def test_it_escapes_every_cell_and_marks_a_period_still_in_progress(owner, analysts, member_client):
    report = make_report(owner, groups=[analysts], slug="months")
    sql = (
        "SELECT month, '<b>' || month || '</b> & \"' AS note FROM "
        "(VALUES ('2026-10'), ('2026-11'), ('2026-12')) AS t(month) ORDER BY month"
    )
    panel = make_panel(report, sql, title="Months", partial_last=True)
    html = member_client.get(f"/reports/months/panels/{panel.pk}/").content.decode()
    body = html[html.index("<tbody>") : html.index("</tbody>")]
    assert "<b>" not in body and '<td class="align-left">&lt;b&gt;2026-10&lt;/b&gt; &amp; &quot;</td>' in body
    rows = re.findall(r"<tr[^>]*>", body)
    assert rows == ["<tr>", "<tr>", '<tr class="partial" title="A period still in progress">']


def test_it_renders_a_panel_as_a_table_with_timing_and_freshness(report, member, member_client):
    panel = report.panels.get()
    response = member_client.get(f"/reports/claims/panels/{panel.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<th scope="col" class="align-left" title="status">Status</th>' in html
    assert '<td class="align-right">42</td>' in html  # a number, right-aligned
    assert "1 row" in html and "updated just now" in html
    again = member_client.get(f"/reports/claims/panels/{panel.pk}/").content.decode()
    assert "cached · updated just now" in again
    log = QueryLog.objects.filter(panel=panel).order_by("created_at")
    assert [(entry.user_id, entry.cache_hit, entry.rows, entry.trigger) for entry in log] == [
        (member.pk, False, 1, "page"),
        (member.pk, True, 1, "page"),
    ]


@pytest.mark.django_db(transaction=True)
async def test_it_writes_the_query_log_once_the_panel_has_been_sent(report, member):
    from django.conf import settings
    from django.core.asgi import get_asgi_application
    from django.test import AsyncClient

    client = AsyncClient()
    await client.aforce_login(member)
    panel = await report.panels.aget()
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/reports/claims/panels/{panel.pk}/",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 1),
    }
    sent = asyncio.Event()
    logged_when_sent = []

    async def receive() -> dict:
        if not sent.is_set() and not logged_when_sent:
            logged_when_sent.append(None)
            return {"type": "http.request", "body": b"", "more_body": False}
        await sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            logged_when_sent.append(await QueryLog.objects.filter(panel=panel).aexists())
            sent.set()

    # Through the ASGI handler, as uvicorn serves it: the browser has the whole panel before the insert.
    await asyncio.wait_for(get_asgi_application()(scope, receive, send), 30)
    assert logged_when_sent == [None, False]
    assert await QueryLog.objects.filter(panel=panel, trigger="page", rows=1).aexists()


def test_it_draws_a_chart_from_json_data_the_page_script_reads(report, member_client):
    panel = make_panel(
        report,
        "SELECT x::text AS label, x * 2 AS doubled FROM generate_series(1, 3) AS x",
        visualization="bar",
        title="Chart",
    )
    html = member_client.get(f"/reports/claims/panels/{panel.pk}/").content.decode()
    data = json.loads(re.search(r'<script type="application/json">(.*?)</script>', html, re.S).group(1))
    assert data == {
        "kind": "bar",
        "labels": ["1", "2", "3"],
        "x_label": "Label",
        "partial": False,
        "datasets": [{"label": "Doubled", "data": [2.0, 4.0, 6.0], "format": {"style": "decimal", "decimals": None}}],
    }
    assert 'data-chart="bar"' in html
    layout = page_chunks(member_client.get("/reports/claims/"))[0]
    assert '<script src="/static/vendor/chart.umd.4.6.1.min.js" async data-chart-library></script>' in layout


def test_it_shows_a_single_number_big(report, member_client):
    panel = make_panel(report, "SELECT 1234567 AS total", visualization="number", title="Total")
    assert "1,234,567" in member_client.get(f"/reports/claims/panels/{panel.pk}/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_it_shows_a_timeout_in_the_panel_with_its_deadline(owner, analysts, member_client):
    report = make_report(owner, groups=[analysts], slug="slow")
    panel = make_panel(report, "SELECT pg_sleep(30)", timeout=1)
    response = member_client.get(f"/reports/slow/panels/{panel.pk}/")
    assert response.status_code == 504
    assert "Timed out after 1 s" in response.content.decode()
    entry = QueryLog.objects.get(panel=panel)
    assert (entry.error_kind, entry.error) == ("timeout", "timed out after 1 s")


def test_it_shows_staff_the_database_message_for_a_failing_panel(report, owner_client):
    panel = make_panel(report, "SELECT 1 / 0", title="Broken")
    response = owner_client.get(f"/reports/claims/panels/{panel.pk}/")
    assert response.status_code == 422
    assert "division by zero" in response.content.decode()


def test_it_shows_others_a_plain_sentence_and_a_reference_staff_find_in_the_query_log(report, member_client):
    panel = make_panel(report, "SELECT 1 / 0", title="Broken")
    response = member_client.get(f"/reports/claims/panels/{panel.pk}/")
    html = response.content.decode()
    assert response.status_code == 422
    assert "division by zero" not in html
    assert "The report’s query failed on the database" in html
    reference = re.search(r"Reference <code>([A-Z0-9]{8})</code>", html).group(1)
    entry = QueryLog.objects.get(reference=reference)
    assert (entry.panel_id, entry.error_kind) == (panel.pk, "query") and "division by zero" in entry.error


@pytest.mark.django_db(transaction=True)  # the gate's table must be seen by other connections
def test_it_says_quietly_that_a_cancelled_panel_was_cancelled(report, member_client):
    # Staff cancel it from /ops/ while it runs: here the test cancels it on the database.
    panel = make_panel(report, GATED_SQL, title="Cancelled")

    def cancel_when_waiting() -> None:
        with psycopg.connect(conninfo_for({}), autocommit=True) as admin:
            for _ in range(600):
                found = admin.execute(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = %s AND state = 'active'",
                    [GATED_SQL],
                ).fetchall()
                if found:
                    return
                time.sleep(0.05)

    with closed_gate(), ThreadPoolExecutor(1) as pool:
        cancelled = pool.submit(cancel_when_waiting)
        response = member_client.get(f"/reports/claims/panels/{panel.pk}/")
        cancelled.result()
    html = response.content.decode()
    assert response.status_code == 409
    assert 'class="panel-note" role="status"' in html and "Cancelled" in html
    assert "panel-error" not in html and "failed" not in html


def test_it_runs_a_panel_fresh_when_asked(report, member_client):
    panel = make_panel(report, "SELECT clock_timestamp() AS at", title="Clock")
    member_client.get(f"/reports/claims/panels/{panel.pk}/")
    assert "cached" in member_client.get(f"/reports/claims/panels/{panel.pk}/").content.decode()
    fresh = member_client.get(f"/reports/claims/panels/{panel.pk}/?fresh=1").content.decode()
    assert "cached" not in fresh
    # Two runs reached the database (the first and the fresh one); the middle one did not.
    assert list(QueryLog.objects.filter(panel=panel).order_by("pk").values_list("cache_hit", flat=True)) == [
        False,
        True,
        False,
    ]


@pytest.mark.django_db(transaction=True)
async def test_it_streams_each_panel_as_its_query_finishes(owner, analysts, member):
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    def setup():
        report = make_report(owner, groups=[analysts], slug="streamed")
        make_panel(report, "SELECT pg_sleep(0.6), 'slow' AS which", title="slow")
        make_panel(report, "SELECT 1 / 0", title="broken")
        make_panel(report, "SELECT 'quick' AS which", title="quick")

    await sync_to_async(setup)()
    client = AsyncClient()
    await client.aforce_login(member)
    response = await client.get("/reports/streamed/stream/")
    assert response.streaming and response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) async for chunk in response.streaming_content for line in chunk.splitlines()]
    assert sorted(line["status"] for line in lines[:2]) == [200, 422]  # broken and quick come first
    assert lines[-1]["status"] == 200 and "slow" in lines[-1]["html"]
    assert await QueryLog.objects.filter(trigger="stream").acount() == 3


@pytest.mark.django_db(transaction=True)
async def test_it_sends_the_layout_while_the_queries_still_run_and_panels_in_the_order_they_finish(
    owner, analysts, member
):
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    def setup():
        report = make_report(owner, groups=[analysts], slug="ordered")
        # Waits until the test opens the gate: no timing decides the order.
        held = make_panel(report, GATED_SQL, title="Held")
        quick = make_panel(report, "SELECT 'quick' AS which", title="Quick")
        return held, quick

    held, quick = await sync_to_async(setup)()
    gate = await sync_to_async(closed_gate, thread_sensitive=True)()
    lock = await sync_to_async(gate.__enter__)()
    client = AsyncClient()
    await client.aforce_login(member)
    try:
        response = await client.get("/reports/ordered/")
        assert response.status_code == 200 and response.streaming
        chunks = aiter(response.streaming_content)
        layout = (await asyncio.wait_for(anext(chunks), 30)).decode()
        assert f'id="panel-{held.pk}"' in layout and f'id="panel-{quick.pk}"' in layout
        assert "data-arrival=" not in layout
        first = (await asyncio.wait_for(anext(chunks), 30)).decode()
        assert f'data-arrival="{quick.pk}"' in first and "quick" in first
    finally:
        await sync_to_async(lock.commit)()
        await sync_to_async(gate.__exit__)(None, None, None)
    rest = [chunk.decode() async for chunk in chunks]
    assert f'data-arrival="{held.pk}"' in rest[0] and rest[-1].rstrip().endswith("</html>")
    assert await QueryLog.objects.filter(trigger="page").acount() == 2
