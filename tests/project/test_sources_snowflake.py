from __future__ import annotations

import asyncio
import uuid

import pytest
from django.conf import settings

from project.sources import ParameterError, QueryCancelled, QueryError, SourceTimeout, SourceUnavailable
from project.sources.snowflake import SnowflakeSource, statement_keyword
from tests.project.snowflake_helpers import emulator_post, running_like, until


def make_source(**overrides: object) -> SnowflakeSource:
    return SnowflakeSource("snowflake", {**settings.FANOUT_SOURCES["snowflake"], **overrides})


@pytest.fixture
async def source():
    source = make_source()
    yield source
    await source.close()


def marker() -> str:
    """A unique comment, to find this test's query among the emulator's running ones."""
    return f"/* {uuid.uuid4().hex} */"


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


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (
            "WITH x AS PROCEDURE () RETURNS INT LANGUAGE SQL AS $$ BEGIN DELETE FROM claims; RETURN 1; END $$ CALL x()",
            "anonymous procedures",
        ),
        ("EXECUTE IMMEDIATE 'DELETE FROM claims'", "EXECUTE"),
        ("CALL bronze.load_file('a', 'b')", "CALL"),
        ("SELECT 1; DELETE FROM claims", "one statement only"),
    ],
)
async def test_it_refuses_report_queries_that_start_harmless_and_write(source, sql: str, reason: str) -> None:
    with pytest.raises(QueryError, match=reason) as info:
        await source.execute(sql)
    assert info.value.http_status == 422


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
    tag = marker()
    with pytest.raises(SourceTimeout, match="timed out after 1 s") as info:
        await source.execute(f"SELECT SYSTEM$WAIT(60) AS w {tag}", timeout=1)
    assert info.value.http_status == 504
    assert running_like(tag) == []  # aborted on the server, not left to run for a minute
    # The connection goes back to the pool usable: the next call on a pool of one works.
    small = make_source(pool_size=1)
    with pytest.raises(SourceTimeout):
        await small.execute("SELECT SYSTEM$WAIT(60) AS w", timeout=1)
    assert (await small.execute("SELECT 5 AS n", timeout=10)).rows == [(5,)]
    await small.close()


async def test_it_holds_no_thread_while_a_query_runs() -> None:
    # Twelve queries on two threads are all running on the server at the same moment.
    source = make_source(pool_size=2)
    tag = marker()
    calls = [
        asyncio.ensure_future(source.execute(f"SELECT SYSTEM$WAIT(3) AS w, %(i)s AS i {tag}", {"i": i}, timeout=60))
        for i in range(12)
    ]
    await until(lambda: len(running_like(tag)) == 12, "all twelve queries run on the server at once")
    results = await asyncio.gather(*calls)
    assert sorted(result.rows[0][1] for result in results) == list(range(12))
    assert source.peak_threads <= 2
    await source.close()


async def test_it_never_runs_more_queries_at_once_than_the_workload_allows() -> None:
    source = make_source(concurrency={"panels": 2})
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
    assert not isinstance(results[1], BaseException) and results[1].rows == [(3,)]


async def test_it_asks_about_a_repeated_statement_once_its_earlier_runs_would_have_ended(source) -> None:
    sql = f"SELECT SYSTEM$WAIT(%(ms)s, 'MILLISECONDS') AS w, %(ms)s AS ms {marker()}"

    async def polls_of(ms: int) -> int:
        before = source.polls
        result = await source.execute(sql, {"ms": ms}, timeout=30)
        assert result.rows[0][1] == ms
        return source.polls - before

    first = await polls_of(300)  # a text never seen: the regular schedule, from a few ms
    await polls_of(300)
    assert await polls_of(300) <= first // 2
    # The same text running longer than before is still waited for, and answers its own rows.
    started = asyncio.get_running_loop().time()
    await polls_of(900)
    assert asyncio.get_running_loop().time() - started >= 0.9


async def test_a_quicker_run_of_a_repeated_statement_is_not_kept_waiting_past_its_deadline(source) -> None:
    sql = f"SELECT SYSTEM$WAIT(%(ms)s, 'MILLISECONDS') AS w, %(ms)s AS ms {marker()}"
    for _ in range(2):
        await source.execute(sql, {"ms": 1500}, timeout=30)
    # The same text with other values finishes at once: it answers within a deadline shorter
    # than the earlier runs took, instead of waiting for them.
    result = await source.execute(sql, {"ms": 10}, timeout=1.4)
    assert result.rows[0][1] == 10


async def test_it_streams_rows_in_batches(source) -> None:
    batches = [rows async for _, rows in source.stream("SELECT * FROM range(2500)", batch_size=1000)]
    assert sum(len(rows) for rows in batches) == 2500


async def test_it_reports_a_source_that_is_down_as_unavailable() -> None:
    source = make_source(host="127.0.0.1", port=9, login_timeout=2)
    with pytest.raises(SourceUnavailable, match="snowflake is unavailable") as info:
        await source.execute("SELECT 1", timeout=30)
    assert info.value.http_status == 503


async def test_it_refuses_an_unknown_workload(source) -> None:
    with pytest.raises(ValueError, match="unknown workload 'reports'"):
        await source.execute("SELECT 1", workload="reports")


# -- cancellation: a caller that goes away stops its query on the server ---------------------------


async def _cancel_while_running(start, tag: str) -> None:
    task = asyncio.ensure_future(start())
    await until(lambda: task.done() or len(running_like(tag)) == 1, "the query runs on the server")
    if task.done():  # it ended before it could be cancelled (a failed call is too quick to see): say how
        raise AssertionError(f"the call ended before it was cancelled: {task.result()!r}")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The abort reached the warehouse before the caller's cancellation completed.
    assert running_like(tag) == []


async def test_it_aborts_a_panel_query_on_the_server_when_its_caller_is_cancelled(source) -> None:
    tag = marker()
    await _cancel_while_running(lambda: source.execute(f"SELECT SYSTEM$WAIT(60) AS w {tag}", timeout=120), tag)


async def test_it_aborts_an_export_on_the_server_when_its_reader_is_cancelled(source) -> None:
    tag = marker()

    async def read_all() -> None:
        async for _ in source.stream(f"SELECT SYSTEM$WAIT(60) AS w {tag}", timeout=120):
            pass

    await _cancel_while_running(read_all, tag)


async def test_it_aborts_a_procedure_call_on_the_server_when_the_run_is_cancelled(source) -> None:
    name = f"slow_{uuid.uuid4().hex[:8]}"
    await source.execute(
        f"CREATE OR REPLACE PROCEDURE {name}() RETURNS VARCHAR LANGUAGE SQL AS $$ BEGIN "
        "LET w VARCHAR := (SELECT SYSTEM$WAIT(60)); RETURN w; END; $$",
        read_only=False,
    )
    await _cancel_while_running(lambda: source.execute(f"CALL {name}()", read_only=False, timeout=900), name)


async def test_it_reports_a_query_cancelled_by_someone_else_as_cancelled(source) -> None:
    from project.sources import inflight

    tag = marker()
    task = asyncio.ensure_future(source.execute(f"SELECT SYSTEM$WAIT(60) AS w {tag}", timeout=120))
    await until(lambda: len(running_like(tag)) == 1, "the query runs on the server")
    (running,) = [r for r in inflight.LOCAL.values() if tag in r.sql]
    await source.cancel(running)
    with pytest.raises(QueryCancelled):
        await task


# -- workloads: none can starve another ------------------------------------------------------------


async def test_it_answers_panels_and_cancels_while_exports_use_their_whole_share() -> None:
    source = make_source(pool_size=1, concurrency={"exports": 1})
    tag = marker()

    async def export() -> None:
        async for _ in source.stream(f"SELECT SYSTEM$WAIT(60) AS w {tag}", timeout=120):
            pass

    exports = [asyncio.ensure_future(export()) for _ in range(2)]
    await until(lambda: len(running_like(tag)) == 1, "one export runs, the other waits for its share")
    # The panel does not wait behind the exports, and neither does a health check.
    assert (await source.execute("SELECT 4 AS n", timeout=20)).rows == [(4,)]
    assert await source.ping() >= 0
    assert len(running_like(tag)) == 1  # the second export still waits: exports are bounded
    for task in exports:
        task.cancel()
    await asyncio.gather(*exports, return_exceptions=True)
    assert running_like(tag) == []
    await source.close()


# -- sessions ----------------------------------------------------------------------------------------


async def test_it_signs_in_again_when_the_pooled_session_has_expired(source) -> None:
    assert (await source.execute("SELECT 1 AS n")).rows == [(1,)]
    expired = await asyncio.to_thread(emulator_post, "/emulator/expire-sessions", {"user": "FAKE"})
    assert expired["expired"] >= 1
    # The pooled session answers 390112, cannot renew (390114): a fresh one runs the query.
    assert (await source.execute("SELECT 2 AS n")).rows == [(2,)]
    assert (await source.execute("SELECT 3 AS n", read_only=False)).rows == [(3,)]


async def test_it_carries_on_when_only_the_session_token_expired(source) -> None:
    assert (await source.execute("SELECT 1 AS n")).rows == [(1,)]
    await asyncio.to_thread(emulator_post, "/emulator/expire-sessions", {"user": "FAKE", "renewable": True})
    assert (await source.execute("SELECT 2 AS n")).rows == [(2,)]


async def test_it_replaces_sessions_older_than_their_maximum_age() -> None:
    def pooled(source: SnowflakeSource) -> list[object]:
        return [each.conn for idle in source._idle.values() for each in idle]

    young = make_source()
    await young.execute("SELECT 1 AS n")
    kept = pooled(young)
    await young.execute("SELECT 1 AS n")
    assert pooled(young) == kept  # reused while young
    old = make_source(max_age=0.000001)
    await old.execute("SELECT 1 AS n")
    assert pooled(old) == []  # signed out as soon as it is too old, never reused
    await young.close()
    await old.close()


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


# -- the report role: the warehouse itself refuses a write -----------------------------------------


@pytest.fixture
async def report_role() -> str:
    """A custom role with read privileges only, granted to the emulator's user (see
    https://docs.snowflake.com/en/user-guide/security-access-control-privileges)."""
    admin = make_source(role="ACCOUNTADMIN")
    await admin.execute("CREATE ROLE IF NOT EXISTS FANOUT_REPORTS", read_only=False)
    await admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA FANOUT.PUBLIC TO ROLE FANOUT_REPORTS", read_only=False)
    await admin.execute("GRANT ROLE FANOUT_REPORTS TO USER fake", read_only=False)
    await admin.close()
    return "FANOUT_REPORTS"


async def test_it_runs_report_queries_under_the_report_role_which_cannot_write(report_role: str) -> None:
    table = f"kept_{uuid.uuid4().hex[:8]}"
    pipeline = make_source(report_role=report_role)
    await pipeline.execute(f"CREATE TABLE {table} (id INT)", read_only=False)
    await pipeline.execute(f"INSERT INTO {table} VALUES (1), (2)", read_only=False)
    assert (await pipeline.execute(f"SELECT COUNT(*) AS n FROM {table}")).rows == [(2,)]

    # A session opened as report queries open theirs: the warehouse refuses what the
    # statement check would have refused first, had the text slipped past it.
    conn = await asyncio.to_thread(pipeline._connect, pipeline._role(read_only=True), 10)
    try:
        for write in (
            f"DELETE FROM {table}",
            f"INSERT INTO {table} VALUES (3)",
            f"WITH x AS PROCEDURE () RETURNS INT LANGUAGE SQL AS $$ BEGIN DELETE FROM {table}; RETURN 1; END $$ "
            "CALL x()",
        ):
            with pytest.raises(Exception, match="Insufficient privileges") as info:
                await asyncio.to_thread(conn.cursor().execute, write)
            assert getattr(info.value, "errno", None) == 3001
    finally:
        await asyncio.to_thread(conn.close)
    assert (await pipeline.execute(f"SELECT COUNT(*) AS n FROM {table}", read_only=False)).rows == [(2,)]
    await pipeline.close()


def test_it_shows_each_workloads_share_in_the_metrics() -> None:
    from project.metrics import render_latest

    make_source(concurrency={"exports": 3})
    text = render_latest().decode()
    assert 'fanout_source_workload_limit{source="snowflake",workload="exports"} 3.0' in text
    assert 'fanout_source_workload_in_flight{source="snowflake",workload="cancel"}' in text
