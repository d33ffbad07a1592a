from __future__ import annotations

import asyncio
import uuid

import pytest
from django.conf import settings

from project.sources import ParameterError, QueryError, SourceTimeout, SourceUnavailable
from project.sources.snowflake import SnowflakeSource, statement_keyword


def make_source(**overrides: object) -> SnowflakeSource:
    return SnowflakeSource("snowflake", {**settings.FANOUT_SOURCES["snowflake"], **overrides})


@pytest.fixture
async def source():
    source = make_source()
    yield source
    await source.close()


async def test_it_runs_a_query_with_bound_parameters(source) -> None:
    result = await source.execute(
        "SELECT %(name)s AS name, %(n)s * 2 AS doubled, 'a%%b' AS literal", {"name": "x'; DROP TABLE t; --", "n": 21}
    )
    assert [column.lower() for column in result.columns] == ["name", "doubled", "literal"]
    assert result.rows == [("x'; DROP TABLE t; --", 42, "a%b")]
    assert result.query_id  # Snowflake's own query id, for the query log and support tickets


async def test_it_refuses_a_missing_parameter(source) -> None:
    with pytest.raises(ParameterError, match="missing value for parameter tpa"):
        await source.execute("SELECT %(tpa)s", {"other": 1})


async def test_it_refuses_writes_in_report_queries(source) -> None:
    with pytest.raises(QueryError, match="read-only"):
        await source.execute("DROP TABLE claims")
    with pytest.raises(QueryError, match="read-only"):
        await source.execute("/* looks harmless */ DELETE FROM claims")


async def test_it_runs_writes_only_when_asked(source) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    await source.execute(f"CREATE TABLE {table} (id INT)", read_only=False)
    written = await source.execute(f"INSERT INTO {table} VALUES (%(a)s), (%(b)s)", {"a": 1, "b": 2}, read_only=False)
    assert written.row_count == 2
    assert (await source.execute(f"SELECT COUNT(*) FROM {table}")).rows == [(2,)]


async def test_it_reports_the_database_message_for_a_bad_query(source) -> None:
    with pytest.raises(QueryError, match="(?i)no_such_table") as info:
        await source.execute("SELECT * FROM no_such_table")
    assert info.value.http_status == 422


async def test_it_times_out_and_aborts_the_query_on_the_server(source) -> None:
    with pytest.raises(SourceTimeout, match="timed out after 1 s") as info:
        await source.execute("SELECT SYSTEM$WAIT(60) AS w", timeout=1)
    assert info.value.http_status == 504
    # The connection goes back to the pool usable: the next call on a pool of one works.
    small = make_source(pool_size=1)
    with pytest.raises(SourceTimeout):
        await small.execute("SELECT SYSTEM$WAIT(60) AS w", timeout=1)
    assert (await small.execute("SELECT 5 AS n", timeout=10)).rows == [(5,)]
    await small.close()


async def test_it_never_runs_more_calls_at_once_than_the_executor_size() -> None:
    source = make_source(pool_size=2)
    results = await asyncio.gather(
        *(source.execute("SELECT SYSTEM$WAIT(0.2) AS w, %(i)s AS i", {"i": i}) for i in range(6))
    )
    assert sorted(result.rows[0][1] for result in results) == list(range(6))
    assert source.peak_in_use == 2
    await source.close()


async def test_it_lets_one_slow_query_not_delay_the_others(source) -> None:
    slow = source.execute("SELECT SYSTEM$WAIT(60) AS w", timeout=1)
    quick = source.execute("SELECT 3 AS n", timeout=10)
    results = await asyncio.gather(slow, quick, return_exceptions=True)
    assert isinstance(results[0], SourceTimeout)
    assert results[1].rows == [(3,)]


async def test_it_streams_rows_in_batches(source) -> None:
    batches = [rows async for _, rows in source.stream("SELECT * FROM range(2500)", batch_size=1000)]
    assert sum(len(rows) for rows in batches) == 2500


async def test_it_reports_a_source_that_is_down_as_unavailable() -> None:
    source = make_source(host="127.0.0.1", port=9, login_timeout=2)
    with pytest.raises(SourceUnavailable, match="snowflake is unavailable") as info:
        await source.execute("SELECT 1", timeout=30)
    assert info.value.http_status == 503


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("select 1", "SELECT"),
        ("-- note\n  WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
        ("/* a */ (SELECT 1)", "SELECT"),
        ("  delete from t", "DELETE"),
    ],
)
def test_it_reads_the_statement_type_past_comments(sql: str, keyword: str) -> None:
    assert statement_keyword(sql) == keyword
