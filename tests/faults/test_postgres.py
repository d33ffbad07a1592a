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


# psycopg's rollback() outside a pipeline: a simple Query message, "ROLLBACK" and its NUL.
SIMPLE_ROLLBACK = b"Q\x00\x00\x00\x0dROLLBACK\x00"


async def test_it_gives_the_connection_back_when_the_deadline_lands_during_the_rollback() -> None:
    """A statement fails, and the deadline passes while its ROLLBACK is on the wire (a slow
    network holds it): the call ends as a timeout, and the pool has every connection back,
    so the next call runs instead of waiting for a connection that never returns."""
    from project.sources.errors import SourceTimeout
    from project.sources.postgres import PostgresSource
    from tests.faults.slowlink import SlowLink

    config = settings.FANOUT_SOURCES["postgres"]
    target = psycopg.conninfo.conninfo_to_dict(conninfo_for(config))
    with SlowLink(str(target["host"]), hold=SIMPLE_ROLLBACK, seconds=2.0) as link:
        url = link.url(str(target["user"]), str(target["dbname"]))
        source = PostgresSource("slow-link", {**config, "url": url, "pool_min": 1, "pool_max": 1, "pool_timeout": 5})
        try:
            with pytest.raises(SourceTimeout):
                await source.execute("SELECT 1 / (SELECT 0 FROM pg_sleep(0.5)) AS x", timeout=1.0)
            assert link.held == 1  # the ROLLBACK after the error, held past the deadline
            link.seconds = 0
            for _ in range(100):  # the pool replaces a connection it had to close, in the background
                stats = source.pool_stats()
                if stats.get("pool_available", 0) == stats.get("pool_size", 0):
                    break
                await asyncio.sleep(0.05)
            assert stats.get("pool_available", 0) == stats.get("pool_size", 0), stats
            assert (await source.execute("SELECT 2 AS x", timeout=10)).rows == [(2,)]
        finally:
            await source.close()
