from __future__ import annotations

import asyncio
import html
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient, Client

from project.sources import QueryCancelled, QueryResult, get_source, inflight

pytestmark = pytest.mark.django_db(transaction=True)

Start = Callable[..., Awaitable[asyncio.Task[QueryResult]]]
# The Postgres one is longer than the page shows in its row.
LONG_SQL = "SELECT pg_sleep(60) AS slept, 'claims of every TPA, every month, every member, every provider' AS why"
LONG_QUERIES = [("postgres", LONG_SQL), ("snowflake", "SELECT SYSTEM$WAIT(60) AS w")]


@pytest.fixture
async def staff_browser(owner: User) -> AsyncClient:
    """Staff in a browser: CSRF is checked, as in production."""
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(owner)
    return client


@pytest.fixture
async def member_browser(member: User) -> AsyncClient:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(member)
    return client


@pytest.fixture
async def start_long_query() -> AsyncIterator[Start]:
    """Start a labelled long query in the background; none is left running when the test ends."""
    started: list[tuple[str, asyncio.Task[QueryResult]]] = []

    async def start(source: str, sql: str, what: str, who: str) -> asyncio.Task[QueryResult]:
        with inflight.labelled(what, who=who):
            task = asyncio.ensure_future(get_source(source).execute(sql, timeout=60))
        started.append((what, task))
        return task

    yield start
    for what, task in started:
        if not task.done():
            for running in inflight.running_now():
                if running.what == what:
                    await inflight.cancel(running.id)
            await asyncio.gather(task, return_exceptions=True)


async def ops_page_listing(client: AsyncClient, what: str) -> str:
    """The operations page once it lists the query labelled `what` (the task needs a moment to start)."""
    for _ in range(250):
        page = (await client.get("/ops/")).content.decode()
        if html.escape(what) in page:
            return page
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what!r} never showed up on the operations page")


def row_of(page: str, what: str) -> str:
    start = page.index(html.escape(what))
    return page[page.rindex("<tr", 0, start) : page.index("</tr>", start)]


def cancel_form(page: str, what: str) -> tuple[str, str]:
    """The row's Cancel form: its action and the CSRF token it posts."""
    row = row_of(page, what)
    action = re.search(r'<form method="post" action="(/ops/queries/[0-9a-f]+/cancel)"', row)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', row)
    assert action and token, row
    return action.group(1), token.group(1)


@pytest.mark.parametrize(("source", "sql"), LONG_QUERIES)
async def test_it_lists_a_running_query_and_staff_cancel_it_from_the_page(
    staff_browser: AsyncClient, start_long_query: Start, source: str, sql: str
) -> None:
    what = f"report claims / panel slow on {source}"
    query = await start_long_query(source, sql, what, who="bob")
    page = await ops_page_listing(staff_browser, what)
    row = row_of(page, what)
    assert f"<td>{source}</td>" in row and "<td>bob</td>" in row
    shown = html.escape(sql if len(sql) <= 80 else sql[:79] + "…")
    full = html.escape(sql)
    assert f'<details><summary title="{full}"><code>{shown}</code></summary><pre>{full}</pre></details>' in row
    assert f"<td>{os.getpid()}</td>" in row  # the process that runs it
    assert ("backend pid " if source == "postgres" else "request id ") in row
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script (a script file is fine)
    assert "<style" not in page and "style=" not in page

    action, token = cancel_form(page, what)
    # Without the page's CSRF token the POST is refused and the query runs on.
    assert (await staff_browser.post(action)).status_code == 403
    assert not query.done()

    cancelled = await staff_browser.post(action, {"csrfmiddlewaretoken": token}, follow=True)
    assert cancelled.redirect_chain == [("/ops/#queries", 302)]
    assert f"Query on {source} cancelled: {what}." in cancelled.content.decode()
    with pytest.raises(QueryCancelled, match="cancelled before it finished"):
        await query
    assert html.escape(what) not in (await staff_browser.get("/ops/")).content.decode()

    again = await staff_browser.post(action, {"csrfmiddlewaretoken": token}, follow=True)
    assert "That query already finished: nothing to cancel." in again.content.decode()
    # The source keeps working after the cancel.
    assert (await get_source(source).execute("SELECT 1 AS one")).rows == [(1,)]


async def test_it_lets_staff_list_and_cancel_queries_over_the_api(
    async_owner_client: AsyncClient, start_long_query: Start
) -> None:
    what = "pipeline run 7 ACME / silver"
    query = await start_long_query("snowflake", "SELECT SYSTEM$WAIT(60) AS w", what, who="alice")
    for _ in range(250):
        listed = [q for q in (await async_owner_client.get("/api/queries")).json() if q["what"] == what]
        if listed:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"{what!r} never showed up in /api/queries")
    found = listed[0]
    assert (found["source"], found["who"], found["process"]) == ("snowflake", "alice", os.getpid())
    assert found["request_id"] and found["elapsed"] >= 0

    cancelled = await async_owner_client.post(f"/api/queries/{found['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["what"] == what
    with pytest.raises(QueryCancelled):
        await query
    again = await async_owner_client.post(f"/api/queries/{found['id']}/cancel")
    assert again.status_code == 404 and "already finished" in again.json()["detail"]


async def test_it_refuses_a_member_the_page_the_cancel_and_the_api(
    member_browser: AsyncClient, staff_browser: AsyncClient, start_long_query: Start
) -> None:
    what = "report claims / panel slow for the member test"
    query = await start_long_query("postgres", "SELECT pg_sleep(60)", what, who="alice")
    page = await ops_page_listing(staff_browser, what)
    action, _ = cancel_form(page, what)
    # The member's own CSRF token, so only the permission can refuse it.
    await member_browser.get("/accounts/login/")
    token = member_browser.cookies["csrftoken"].value
    assert (await member_browser.get("/ops/")).status_code == 403
    assert (await member_browser.post(action, {"csrfmiddlewaretoken": token})).status_code == 403
    assert (await member_browser.get("/api/queries")).status_code == 403
    query_id = action.split("/")[3]
    api_cancel = await member_browser.post(f"/api/queries/{query_id}/cancel", headers={"X-CSRFToken": token})
    assert api_cancel.status_code == 403
    assert not query.done()
    assert html.escape(what) in (await staff_browser.get("/ops/")).content.decode()  # still running


def test_it_refuses_an_outsider_too(outsider_client: Client) -> None:
    assert outsider_client.get("/ops/").status_code == 403
    assert outsider_client.post("/ops/queries/0123456789abcdef0123456789abcdef/cancel").status_code == 403
    assert outsider_client.get("/api/queries").status_code == 403
    assert outsider_client.post("/api/queries/0123456789abcdef0123456789abcdef/cancel").status_code == 403
