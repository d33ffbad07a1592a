"""The Snowflake emulator, driven by the real connector over HTTP."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
from snowflake.connector import SnowflakeConnection
from snowflake.connector.cursor import SnowflakeCursor
from snowflake.connector.errors import ProgrammingError

from devtools.emulator import connection_kwargs, running_queries, serve_in_thread

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

REPO = Path(__file__).resolve().parents[2]

LOAD_PROCEDURE = """
-- deployed as a file, comments and all
CREATE OR REPLACE PROCEDURE load_claims(path VARCHAR, tpa VARCHAR)
  RETURNS VARIANT
  LANGUAGE SQL
  EXECUTE AS CALLER
AS
$$
DECLARE
  loaded NUMBER DEFAULT 0;
BEGIN
  LET before INTEGER := (SELECT COUNT(*) FROM claims);
  EXECUTE IMMEDIATE 'COPY INTO claims FROM @uploads/' || :path || ' FILE_FORMAT=(TYPE=CSV SKIP_HEADER=1)';
  LET after_copy INTEGER := SQLROWCOUNT;
  loaded := (SELECT COUNT(*) FROM claims) - before;
  INSERT INTO load_log (tpa, row_count) VALUES (:tpa, :loaded);
  LET total INTEGER := (SELECT COUNT(*) FROM claims);
  RETURN OBJECT_CONSTRUCT('loaded', loaded, 'total', total, 'tpa', tpa, 'after_copy', COALESCE(after_copy, -1));
END;
$$
"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[dict[str, Any]]:
    with serve_in_thread() as kwargs:
        yield kwargs


def connect(kwargs: dict[str, Any], schema: str) -> SnowflakeConnection:
    return snowflake.connector.connect(**kwargs, database="EMULATOR_TEST", schema=schema, paramstyle="qmark")


@pytest.fixture
def snowflake_conn(emulator: dict[str, Any]) -> Iterator[SnowflakeConnection]:
    """A connection to a schema of its own, as the app connects (server-side qmark binding)."""
    conn = connect(emulator, f"T_{uuid.uuid4().hex[:8]}")
    yield conn
    conn.close()


def put(conn: SnowflakeConnection, target: str, name: str, content: bytes) -> None:
    conn.cursor().execute(f"PUT 'file://{name}' {target}", file_stream=io.BytesIO(content))


def wait_until(condition: Callable[[], bool], what: str) -> None:
    # a generous deadline: it only bounds how long a broken emulator takes to fail the test
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def run(cursor: SnowflakeCursor, sql: str, params: Any = None) -> SnowflakeCursor:
    """cursor.execute, which types its result as optional, for a statement that returns rows."""
    result = cursor.execute(sql, params)
    assert result is not None
    return result


# -- SYSTEM$WAIT and aborts -------------------------------------------------------------------


def test_it_returns_the_wait_string_for_literal_and_bound_amounts(snowflake_conn: SnowflakeConnection) -> None:
    qmark = snowflake_conn.cursor()
    assert run(qmark, "SELECT SYSTEM$WAIT(0.2) AS w, 1 AS x").fetchall() == [("waited 0.2 seconds", 1)]
    assert run(qmark, "SELECT SYSTEM$WAIT(?, 'MILLISECONDS') AS w, ? AS x", (5, "a")).fetchall() == [
        ("waited 5 milliseconds", "a")
    ]


def test_it_takes_a_numeric_bound_amount(emulator: dict[str, Any]) -> None:
    with closing(snowflake.connector.connect(**emulator, paramstyle="numeric")) as conn:
        cur = conn.cursor()
        assert run(cur, "SELECT :2 AS x, SYSTEM$WAIT(:1) AS w", (0, "b")).fetchall() == [("b", "waited 0 seconds")]


def test_it_runs_concurrent_waits_at_the_same_time(emulator: dict[str, Any]) -> None:
    connections = [connect(emulator, "WAITS") for _ in range(8)]

    def wait(conn: SnowflakeConnection) -> int:
        with pytest.raises(ProgrammingError) as info:
            conn.cursor().execute("SELECT SYSTEM$WAIT(60) AS w")
        return info.value.errno

    with ThreadPoolExecutor(len(connections)) as pool:
        outcomes = [pool.submit(wait, conn) for conn in connections]
        # all eight sleep at once: none holds a thread that another one waits for
        wait_until(lambda: sum(q.waiting for q in running_queries()) == 8, "8 waits are in flight")

        # another session cancels them by requestId
        admin = connect(emulator, "WAITS").cursor()
        for query in running_queries():
            answer = run(admin, "SELECT SYSTEM$CANCEL_QUERY(?)", (query.request_id,)).fetchall()
            assert answer == [(f"query [{query.request_id}] terminated.",)]
        assert [outcome.result() for outcome in outcomes] == [604] * 8
    assert running_queries() == []
    for conn in [*connections, admin.connection]:
        conn.close()


def test_it_aborts_a_wait_when_the_client_times_out(snowflake_conn: SnowflakeConnection) -> None:
    cur = snowflake_conn.cursor()
    # The connector words it "cancelled by the client due to a timeout" only if its abort request
    # has returned before the cancelled query's answer arrives, which a loaded machine can reorder.
    with pytest.raises(ProgrammingError, match="SQL execution canceled") as info:
        cur.execute("SELECT SYSTEM$WAIT(60) AS w", timeout=1)
    assert info.value.errno == 604
    assert running_queries() == []
    assert run(cur, "SELECT 'next' AS n").fetchall() == [("next",)]


def test_it_interrupts_a_long_duckdb_query(snowflake_conn: SnowflakeConnection) -> None:
    cur = snowflake_conn.cursor()
    # 10^16 rows: it never ends on its own
    with pytest.raises(ProgrammingError, match="SQL execution canceled") as info:
        cur.execute("SELECT COUNT(*) FROM range(100000000) AS a, range(100000000) AS b", timeout=1)
    assert info.value.errno == 604
    assert running_queries() == []
    assert run(cur, "SELECT 2 + 2 AS n").fetchall() == [(4,)]


# -- stages ---------------------------------------------------------------------------------


def test_it_lists_only_the_files_under_a_path(snowflake_conn: SnowflakeConnection) -> None:
    cur = snowflake_conn.cursor()
    cur.execute("CREATE STAGE uploads")
    put(snowflake_conn, "@uploads/acme/2024/", "jan.csv", b"id\n1\n")
    put(snowflake_conn, "@uploads/acme/2025/", "jan.csv", b"id\n2\n")
    put(snowflake_conn, "@uploads/globex/", "feb.csv", b"id\n3\n")

    rows = run(cur, "LIST @uploads/acme/").fetchall()
    assert [d.name for d in cur.description] == ["name", "size", "md5", "last_modified"]
    assert [r[0] for r in rows] == ["uploads/acme/2024/jan.csv.gz", "uploads/acme/2025/jan.csv.gz"]
    assert all(r[1] > 0 and len(r[2]) == 32 and r[3].endswith("GMT") for r in rows)
    assert [r[0] for r in run(cur, "LIST @uploads PATTERN = '.*2025.*'").fetchall()] == ["uploads/acme/2025/jan.csv.gz"]
    assert len(run(cur, "LIST @uploads").fetchall()) == 3
    assert run(cur, "LIST @uploads/initech/").fetchall() == []


def test_it_removes_a_file_or_everything_under_a_prefix(snowflake_conn: SnowflakeConnection) -> None:
    cur = snowflake_conn.cursor()
    cur.execute("CREATE STAGE uploads")
    for folder, name in [("a/", "1.csv"), ("a/", "2.csv"), ("b/", "3.csv")]:
        put(snowflake_conn, f"@uploads/{folder}", name, b"id\n1\n")

    assert run(cur, "REMOVE @uploads/a/1.csv.gz").fetchall() == [("uploads/a/1.csv.gz", "removed")]
    assert [d.name for d in cur.description] == ["name", "result"]
    assert run(cur, "RM @uploads/a/").fetchall() == [("uploads/a/2.csv.gz", "removed")]
    assert [r[0] for r in run(cur, "LIST @uploads").fetchall()] == ["uploads/b/3.csv.gz"]


def test_it_loads_a_staged_file_once(snowflake_conn: SnowflakeConnection, tmp_path: Path) -> None:
    cur = snowflake_conn.cursor()
    cur.execute("CREATE STAGE uploads")
    cur.execute("CREATE TABLE claims (id INT, amount NUMBER(10, 2))")
    (tmp_path / "claims.csv").write_text("id,amount\n1,10.50\n2,20.00\n")
    cur.execute(f"PUT 'file://{tmp_path / 'claims.csv'}' @uploads/acme/")
    put(snowflake_conn, "@uploads/acme/", "more.csv", b"id,amount\n3,1.25\n")

    copy = "COPY INTO claims FROM @uploads/acme/ FILE_FORMAT=(TYPE=CSV SKIP_HEADER=1)"
    assert {(r[0], r[1], r[3]) for r in run(cur, copy).fetchall()} == {
        ("uploads/acme/claims.csv.gz", "LOADED", 2),
        ("uploads/acme/more.csv.gz", "LOADED", 1),
    }
    assert {r[1] for r in run(cur, copy).fetchall()} == {"LOAD_SKIPPED"}
    assert run(cur, "SELECT COUNT(*), SUM(amount) FROM claims").fetchone() == (3, 31.75)


# -- procedures -------------------------------------------------------------------------------


def test_it_calls_a_procedure_with_bound_arguments(snowflake_conn: SnowflakeConnection) -> None:
    cur = snowflake_conn.cursor()
    cur.execute("CREATE STAGE uploads")
    cur.execute("CREATE TABLE claims (id INT, amount NUMBER(10, 2))")
    cur.execute("CREATE TABLE load_log (tpa VARCHAR, row_count INT)")
    put(snowflake_conn, "@uploads/acme/", "claims.csv", b"id,amount\n1,10\n2,20\n3,30\n")
    assert run(cur, LOAD_PROCEDURE).fetchall() == [("Function LOAD_CLAIMS successfully created.",)]

    [(result,)] = run(cur, "CALL load_claims(?, ?)", ("acme/", "ACME")).fetchall()
    assert [d.name for d in cur.description] == ["LOAD_CLAIMS"]
    # COPY is not DML: SQLROWCOUNT is NULL after it, as on Snowflake (2025_01 behaviour).
    assert json.loads(result) == {"loaded": 3, "total": 3, "tpa": "ACME", "after_copy": -1}
    assert run(cur, "SELECT tpa, row_count FROM load_log").fetchall() == [("ACME", 3)]


def test_it_evaluates_system_functions_in_a_procedures_expressions(snowflake_conn: SnowflakeConnection) -> None:
    # Snowflake Scripting may call SYSTEM$WAIT in LET, an assignment and RETURN, not only in a
    # statement; DuckDB has no such function, so the emulator must evaluate it there too.
    cur = snowflake_conn.cursor()
    cur.execute(
        "CREATE PROCEDURE pauses() RETURNS VARCHAR LANGUAGE SQL AS $$ BEGIN "
        "LET w VARCHAR := (SELECT SYSTEM$WAIT(10, 'MILLISECONDS')); "
        "w := w || ' / ' || SYSTEM$WAIT(1, 'MILLISECONDS'); "
        "RETURN w || ' / ' || SYSTEM$WAIT(2, 'MILLISECONDS'); END; $$"
    )
    assert run(cur, "CALL pauses()").fetchall() == [
        ("waited 10 milliseconds / waited 1 milliseconds / waited 2 milliseconds",)
    ]


def test_it_keeps_the_statements_before_a_failing_one(snowflake_conn: SnowflakeConnection) -> None:
    cur = snowflake_conn.cursor()
    cur.execute("CREATE TABLE load_log (tpa VARCHAR, row_count INT)")
    cur.execute(
        """CREATE PROCEDURE half_done() RETURNS VARCHAR LANGUAGE SQL AS $$
        BEGIN
          INSERT INTO load_log VALUES ('first', 1);
          INSERT INTO no_such_table VALUES (2);
          RETURN 'unreachable';
        END;
        $$"""
    )
    with pytest.raises(ProgrammingError, match=r"on line 4 .*(?i:no_such_table)") as info:
        cur.execute("CALL half_done()")
    assert info.value.errno == 2003
    assert run(cur, "SELECT * FROM load_log").fetchall() == [("first", 1)]


def test_it_rolls_back_a_transaction_the_procedure_began_when_a_statement_fails(
    snowflake_conn: SnowflakeConnection,
) -> None:
    cur = snowflake_conn.cursor()
    cur.execute("CREATE TABLE totals (tpa VARCHAR, amount NUMBER(4, 2))")
    cur.execute("INSERT INTO totals VALUES ('ACME', 10)")
    cur.execute(
        """CREATE PROCEDURE refresh() RETURNS VARCHAR LANGUAGE SQL AS $$
        BEGIN
          BEGIN TRANSACTION;
          DELETE FROM totals WHERE tpa = 'ACME';
          INSERT INTO totals VALUES ('ACME', 12345);
          COMMIT;
          RETURN 'done';
        END;
        $$"""
    )
    with pytest.raises(ProgrammingError, match="on line 5"):
        cur.execute("CALL refresh()")
    # The delete was undone with the failed insert, and the session works on.
    assert run(cur, "SELECT tpa, amount FROM totals").fetchall() == [("ACME", 10)]


def test_it_fails_a_call_that_leaves_its_transaction_open(snowflake_conn: SnowflakeConnection) -> None:
    cur = snowflake_conn.cursor()
    cur.execute("CREATE TABLE totals (tpa VARCHAR)")
    cur.execute(
        """CREATE PROCEDURE forgets() RETURNS VARCHAR LANGUAGE SQL AS $$
        BEGIN
          BEGIN TRANSACTION;
          INSERT INTO totals VALUES ('ACME');
          RETURN 'done';
        END;
        $$"""
    )
    with pytest.raises(ProgrammingError, match="Scoped transaction started in stored procedure is incomplete"):
        cur.execute("CALL forgets()")
    assert run(cur, "SELECT COUNT(*) FROM totals").fetchall() == [(0,)]


def test_it_names_the_unsupported_construct(snowflake_conn: SnowflakeConnection) -> None:
    cur = snowflake_conn.cursor()
    body = "BEGIN IF (1 = 1) THEN RETURN 1; END IF; END"
    with pytest.raises(ProgrammingError, match="does not support IF statements"):
        cur.execute(f"CREATE PROCEDURE branches() RETURNS INT LANGUAGE SQL AS $${body}$$")
    with pytest.raises(ProgrammingError, match="does not support LANGUAGE PYTHON"):
        cur.execute("CREATE PROCEDURE py() RETURNS INT LANGUAGE PYTHON AS $$ def run(): return 1 $$")


# -- persistence and the command line --------------------------------------------------------


class Emulator:
    """python -m devtools.emulator, as `make demo` runs it."""

    def __init__(self, data_dir: Path) -> None:
        self.log = (data_dir.parent / "emulator.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.emulator", "--port", "0", "--data-dir", str(data_dir)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        # if the emulator neither starts nor exits, fail rather than hang
        watchdog = threading.Timer(30, self.process.kill)
        watchdog.start()
        assert self.process.stdout
        line = self.process.stdout.readline().strip()
        watchdog.cancel()
        if not line.startswith("snowflake emulator listening on http://127.0.0.1:"):
            self.process.kill()
            self.log.close()
            pytest.fail(f"the emulator did not start: {line!r}, see {self.log.name}")
        self.kwargs = connection_kwargs("127.0.0.1", int(line.rsplit(":", 1)[1]))

    def connect(self) -> SnowflakeConnection:
        return snowflake.connector.connect(**self.kwargs, database="FANOUT", schema="BRONZE", paramstyle="qmark")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        finally:
            self.log.close()


def test_it_keeps_tables_stages_and_procedures_across_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "snowflake"
    first = Emulator(data_dir)
    try:
        with closing(first.connect()) as conn:
            cur = conn.cursor()
            cur.execute("CREATE TABLE claims (id INT)")
            cur.execute("INSERT INTO claims VALUES (1), (2)")
            cur.execute("CREATE STAGE uploads")
            put(conn, "@uploads/acme/", "claims.csv", b"id\n3\n")
            cur.execute(
                "CREATE PROCEDURE claim_count(extra INT) RETURNS INT LANGUAGE SQL "
                "AS 'BEGIN RETURN (SELECT COUNT(*) FROM claims) + extra; END'"
            )
    finally:
        assert first.stop() == 0  # SIGTERM stops it cleanly

    second = Emulator(data_dir)
    try:
        with closing(second.connect()) as conn:
            cur = conn.cursor()
            assert run(cur, "SELECT id FROM claims ORDER BY id").fetchall() == [(1,), (2,)]
            assert [r[0] for r in run(cur, "LIST @uploads").fetchall()] == ["uploads/acme/claims.csv.gz"]
            assert run(cur, "CALL claim_count(?)", (10,)).fetchall() == [(12,)]
    finally:
        assert second.stop() == 0


def test_it_answers_an_unsupported_statement_at_once_with_an_error(snowflake_conn) -> None:
    # fakesnow answers HTTP 500 here, which the connector would retry for minutes.
    with pytest.raises(ProgrammingError, match="the emulator cannot run this statement"):
        snowflake_conn.cursor().execute("SELECT ARRAY_CONTAINS('a'::VARIANT, PARSE_JSON(?))", ['["a"]'])


def test_it_sums_fixed_point_numbers_without_turning_them_into_floats(snowflake_conn: SnowflakeConnection) -> None:
    cursor = snowflake_conn.cursor()
    cursor.execute("CREATE TABLE AMOUNTS (PAID NUMBER(12, 2), NOTE VARCHAR)")
    cursor.execute("INSERT INTO AMOUNTS VALUES (0.10, 'a'), (0.20, 'b'), (1289679.30, 'c')")
    cursor.execute("SELECT SUM(PAID), SUM(PAID) AS TOTAL, SUM('1.5') AS TEXT_SUM FROM AMOUNTS")
    assert [column.name for column in cursor.description] == ["SUM(PAID)", "TOTAL", "TEXT_SUM"]
    assert cursor.fetchone() == (Decimal("1289679.60"), Decimal("1289679.60"), 4.5)


# -- statements compiled once -----------------------------------------------------------------


def test_it_runs_the_same_select_text_against_each_sessions_schema(emulator: dict[str, Any]) -> None:
    """The emulator keeps a SELECT's compiled form per text: a second schema, a changed
    table and a bound value must each still give that run's own answer."""
    first, second = (connect(emulator, f"T_{uuid.uuid4().hex[:8]}") for _ in range(2))
    with closing(first), closing(second):
        for conn, name in ((first, "first"), (second, "second")):
            conn.cursor().execute("CREATE TABLE notes (name VARCHAR, n INTEGER)")
            conn.cursor().execute("INSERT INTO notes VALUES (?, 1)", [name])
        text = "SELECT name, n + ? AS m FROM notes ORDER BY name"
        assert run(first.cursor(), text, [1]).fetchall() == [("first", 2)]
        assert run(second.cursor(), text, [10]).fetchall() == [("second", 11)]
        second.cursor().execute("INSERT INTO notes VALUES ('third', 5)")
        assert run(second.cursor(), text, [0]).fetchall() == [("second", 1), ("third", 5)]
        assert run(first.cursor(), text, [1]).fetchall() == [("first", 2)]


def test_it_refuses_a_statement_that_does_not_parse_every_time(snowflake_conn: SnowflakeConnection) -> None:
    for _ in range(2):
        with pytest.raises(ProgrammingError) as refused:
            snowflake_conn.cursor().execute("SELECT FROM WHERE (")
        assert refused.value.errno == 1003
