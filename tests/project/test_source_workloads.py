"""Workloads on Postgres: exports that use their whole share never take the connection a
panel, a health check or the Cancel button needs."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from django.conf import settings

from project.sources import inflight
from project.sources.errors import QueryCancelled
from project.sources.postgres import PostgresSource
from project.sources.workloads import Limiter, resolve_workload

pytestmark = pytest.mark.django_db(transaction=True)


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + 30  # bounds a broken build, never the measure
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def test_it_answers_panels_health_and_cancels_while_exports_use_their_whole_share() -> None:
    config = {**settings.FANOUT_SOURCES["postgres"], "pool_max": 1, "pool_min": 0, "concurrency": {"exports": 1}}
    source = PostgresSource("postgres", config)
    marker = f"export_{uuid.uuid4().hex[:8]}"

    async def export() -> None:
        async for _ in source.stream(f"SELECT pg_sleep(60), '{marker}' AS m", timeout=120):
            pass

    exports = [asyncio.ensure_future(export()) for _ in range(2)]

    async def one_export_runs() -> bool:
        # A call is listed once it holds its connection (a server-side cursor's FETCH does not
        # show the statement's text in pg_stat_activity).
        return len([r for r in inflight.LOCAL.values() if marker in r.sql]) == 1

    await until(one_export_runs, "one export runs and the other waits for its share")
    # The one panel connection is free, and so are the health check's and the cancel's.
    assert (await source.execute("SELECT 4 AS n", timeout=20)).rows == [(4,)]
    assert await source.ping() >= 0
    assert len([r for r in inflight.LOCAL.values() if marker in r.sql]) == 1  # the second still waits
    (running,) = [r for r in inflight.LOCAL.values() if marker in r.sql]
    await source.cancel(running)
    done, _ = await asyncio.wait(exports, return_when=asyncio.FIRST_COMPLETED)
    assert isinstance(next(iter(done)).exception(), QueryCancelled)
    for task in exports:
        task.cancel()
    await asyncio.gather(*exports, return_exceptions=True)
    await source.close()


def test_it_defaults_reads_to_panels_and_writes_to_the_pipeline() -> None:
    assert resolve_workload(None, read_only=True) == "panels"
    assert resolve_workload(None, read_only=False) == "pipeline"
    with pytest.raises(ValueError, match="unknown workload 'reports'"):
        resolve_workload("reports", read_only=True)


async def test_it_hands_a_freed_place_to_the_next_caller_in_order() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    order: list[int] = []

    async def take(n: int) -> None:
        await limiter.acquire()
        order.append(n)
        limiter.release()

    waiting = [asyncio.ensure_future(take(n)) for n in range(3)]
    await asyncio.sleep(0)
    waiting[1].cancel()  # a caller that gives up while waiting holds no place afterwards
    limiter.release()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert order == [0, 2]
    assert limiter.active == 0
