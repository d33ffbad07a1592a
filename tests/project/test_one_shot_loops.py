"""Pools and background tasks bound to an event loop end with it.

Management commands, sync test clients and `async_to_sync` each run on an event loop that
lives for one call. A psycopg pool left open on such a loop kept `asyncio.Runner.close()`
waiting forever (its worker swallows the cancellation while it connects), and every
finished loop kept its pool's connections until the server refused new clients.
"""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from project.sources.postgres import PostgresSource
from tests.loops import DEADLINE, backends, call_with_deadline, keep_pool_warnings_out_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_closes_a_loops_pool_when_the_loop_ends_even_while_the_pool_grows(caplog: pytest.LogCaptureFixture) -> None:
    keep_pool_warnings_out_of(caplog)
    source = PostgresSource("postgres", settings.FANOUT_SOURCES["postgres"])
    before = backends()

    async def three_at_once() -> None:
        # Three concurrent queries on a pool of one make the pool grow: at the loop's end
        # a new connection is usually still being opened.
        await asyncio.gather(*(source.execute("SELECT 1") for _ in range(3)))

    for attempt in range(100):
        call_with_deadline(lambda: asyncio.run(three_at_once()), DEADLINE, f"asyncio.run #{attempt}")
    assert backends() <= before  # no pool of a finished loop holds a connection
    assert not source._pools  # nor is kept alive with its loop
