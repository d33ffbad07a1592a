from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from project.metrics import SOURCE_CALLS
from project.sources import ParameterError, QueryError, QueryResult, SourceTimeout, SourceUnavailable, get_source
from project.sources.postgres import PostgresSource, conninfo_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def source():
    source = PostgresSource("postgres", settings.FANOUT_SOURCES["postgres"])
    yield source
    await source.close()


async def running_queries(marker: str) -> int:
    """How many server backends are running a statement containing `marker` now."""
    async with await psycopg.AsyncConnection.connect(conninfo_for({}), autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
            [f"%{marker}%"],
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_it_runs_a_query_with_bound_parameters(source) -> None:
    result = await source.execute(
        "SELECT %(name)s::text AS name, %(n)s::int * 2 AS doubled, 'a%%b' AS literal", {"name": "x'; DROP--", "n": 21}
    )
    assert result.columns == ["name", "doubled", "literal"]
    assert result.rows == [("x'; DROP--", 42, "a%b")]
    assert result.row_count == 1
    assert result.query_id.isdigit()
    assert isinstance(result.elapsed, float)  # reported to the page; its size is for bench/


async def test_it_refuses_a_missing_parameter_before_querying(source) -> None:
    with pytest.raises(ParameterError, match="missing value for parameter tpa"):
        await source.execute("SELECT %(tpa)s", {})


async def test_it_refuses_writes_in_report_queries(source) -> None:
    with pytest.raises(QueryError, match="read-only"):
        await source.execute("CREATE TABLE should_not_exist (id int)")
    with pytest.raises(QueryError, match="read-only"):
        await source.execute("INSERT INTO auth_group (name) VALUES ('sneaky')")
    assert not await Group.objects.filter(name="sneaky").aexists()


async def test_it_reports_the_database_message_for_a_bad_query(source) -> None:
    with pytest.raises(QueryError) as info:
        await source.execute("SELECT * FROM no_such_table")
    assert 'relation "no_such_table" does not exist' in str(info.value)
    assert info.value.http_status == 422


async def test_it_cancels_the_server_query_at_the_deadline(source) -> None:
    marker = f"probe_{uuid.uuid4().hex}"
    before = SOURCE_CALLS.labels("postgres", "query", "timeout")._value.get()
    with pytest.raises(SourceTimeout, match=r"timed out after 0.5 s") as info:
        await source.execute(f"SELECT pg_sleep(30), '{marker}'", timeout=0.5)
    assert info.value.http_status == 504
    assert SOURCE_CALLS.labels("postgres", "query", "timeout")._value.get() == before + 1
    # The query must be gone from the server, not left running behind the caller.
    for _ in range(50):
        if await running_queries(marker) == 0:
            break
        await asyncio.sleep(0.1)
    assert await running_queries(marker) == 0
    # ... and the pool hands out a working connection afterwards.
    assert (await source.execute("SELECT 1 AS one")).rows == [(1,)]


async def test_it_keeps_other_queries_running_when_one_times_out(source) -> None:
    slow = source.execute("SELECT pg_sleep(30)", timeout=0.3)
    quick = source.execute("SELECT 7 AS n", timeout=10)
    results = await asyncio.gather(slow, quick, return_exceptions=True)
    assert isinstance(results[0], SourceTimeout)
    assert isinstance(results[1], QueryResult) and results[1].rows == [(7,)]


async def test_it_streams_rows_in_batches(source) -> None:
    batches = [rows async for _, rows in source.stream("SELECT g FROM generate_series(1, 2500) g", batch_size=1000)]
    assert [len(rows) for rows in batches] == [1000, 1000, 500]
    assert batches[-1][-1] == (2500,)


async def test_it_marks_results_cut_at_max_rows(source) -> None:
    result = await source.execute("SELECT g FROM generate_series(1, 50) g", max_rows=10)
    assert result.row_count == 10
    assert result.truncated


async def test_it_reports_a_source_that_is_down_as_unavailable() -> None:
    config = {
        **settings.FANOUT_SOURCES["postgres"],
        "url": "postgresql://nobody@127.0.0.1:9/none",
        "connect_timeout": 1,
    }
    source = PostgresSource("down", config)
    with pytest.raises(SourceUnavailable, match="down is unavailable") as info:
        await source.execute("SELECT 1", timeout=30)
    assert info.value.http_status == 503


async def test_it_shares_one_source_per_name() -> None:
    assert get_source("postgres") is get_source("postgres")
