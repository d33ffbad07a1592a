from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.core.asgi import get_asgi_application
from django.test import Client

from project.sources import get_source
from reports.models import Panel
from tests.reports.conftest import make_panel, make_report

pytestmark = pytest.mark.django_db(transaction=True)


async def running(marker: str) -> int:
    """Statements on the server whose text carries the marker (the check's own text does not)."""
    result = await get_source("postgres").execute(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %(pattern)s "
        "AND pid <> pg_backend_pid()",
        {"pattern": f"%{marker}%"},
        timeout=5,
    )
    return int(result.rows[0][0])


async def wait_until(condition, seconds: float = 15.0) -> bool:
    for _ in range(int(seconds / 0.1)):
        if await condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_it_cancels_the_query_on_the_database_when_the_browser_goes_away(owner, analysts, member):
    marker = f"cancel_{uuid.uuid4().hex[:8]}"

    def setup() -> tuple[Panel, str]:
        report = make_report(owner, groups=[analysts], slug="cancel")
        panel = make_panel(report, f"SELECT pg_sleep(60) AS {marker}", timeout=120)
        client = Client()
        client.force_login(member)
        return panel, client.cookies["sessionid"].value

    panel, session = await sync_to_async(setup)()
    went_away = asyncio.Event()
    sent: list[dict] = []
    request_sent = False

    async def receive() -> dict:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await went_away.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/reports/cancel/panels/{panel.pk}/",
        "raw_path": b"",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"cookie", f"sessionid={session}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    request = asyncio.create_task(get_asgi_application()(scope, receive, send))
    assert await wait_until(lambda: _positive(running(marker))), "the panel's query never started"
    went_away.set()  # the tab closed
    await asyncio.wait_for(request, 30)
    assert await wait_until(lambda: _zero(running(marker))), "the query kept running after the browser left"
    assert not sent  # nothing was answered to nobody


async def _positive(count) -> bool:
    return await count > 0


async def _zero(count) -> bool:
    return await count == 0
