"""A Postgres report query that never ends is cancelled at its deadline, and the one
connection of the pool serves the next panel afterwards."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import AsyncClient, override_settings

from project.sources import get_source
from project.sources.postgres import conninfo_for
from tests.reports.conftest import make_panel, make_report

pytestmark = pytest.mark.django_db(transaction=True)

NEVER = "SELECT pg_sleep(3600) AS never, 'fault_probe_never_ends' AS marker"


@pytest.fixture
def pool_of_one() -> Iterator[None]:
    """Report queries get a single connection: the next panel can only run on the same one."""
    sources = copy.deepcopy(settings.FANOUT_SOURCES)
    sources["postgres"].update(pool_min=1, pool_max=1)
    with override_settings(FANOUT_SOURCES=sources):
        get_source.cache_clear()
        yield
    get_source.cache_clear()


async def still_running(marker: str) -> int:
    async with await psycopg.AsyncConnection.connect(conninfo_for({}), autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
            [f"%{marker}%"],
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def test_it_cancels_a_never_ending_panel_at_its_deadline_and_reuses_the_connection(
    pool_of_one: None, owner: User, analysts: Group
) -> None:
    report, never, whoami = await asyncio.to_thread(build_report, owner, analysts)
    client = AsyncClient()
    await client.aforce_login(owner)
    base = f"/api/reports/{report.slug}/panels"

    before = await client.get(f"{base}/{whoami}/run")
    assert before.status_code == 200
    backend = before.json()["rows"][0][0]

    response = await asyncio.wait_for(client.get(f"{base}/{never}/run"), 60)
    assert response.status_code == 504
    assert response.json()["error"] == {"kind": "timeout", "message": "timed out after 1 s", "status": 504}
    page = await client.get(f"/reports/{report.slug}/panels/{never}/")
    assert page.status_code == 504 and "Timed out after 1 s" in page.content.decode()

    # Gone from the server, not left running behind the answer (bounded wait for the cancel).
    for _ in range(100):
        if await still_running("fault_probe_never_ends") == 0:
            break
        await asyncio.sleep(0.1)
    assert await still_running("fault_probe_never_ends") == 0

    after = await client.get(f"{base}/{whoami}/run")
    assert after.status_code == 200
    assert after.json()["rows"][0][0] == backend  # the same, only connection, usable again


def build_report(owner: User, analysts: Group) -> tuple:
    report = make_report(owner, groups=[analysts], slug="fault-postgres")
    never = make_panel(report, NEVER, title="Never ends", timeout=1, cache_ttl=0)
    whoami = make_panel(report, "SELECT pg_backend_pid() AS pid", title="Backend", cache_ttl=0)
    return report, never.pk, whoami.pk
