"""The emulator speaks Snowflake's protocol for what Fanout relies on, to the real connector:
asynchronous queries, sign-in by key pair, session expiry, and read-only custom roles."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import pytest
import snowflake.connector
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from snowflake.connector import SnowflakeConnection
from snowflake.connector.constants import QueryStatus
from snowflake.connector.cursor import SnowflakeCursor
from snowflake.connector.errors import DatabaseError, ProgrammingError

from devtools.emulator import accounts, asyncexec, running_queries, serve_in_thread

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")


@pytest.fixture(scope="module")
def emulator() -> Iterator[dict[str, Any]]:
    with serve_in_thread() as kwargs:
        yield kwargs


@pytest.fixture
def conn(emulator: dict[str, Any]) -> Iterator[SnowflakeConnection]:
    with closing(snowflake.connector.connect(**emulator, database="PROTO", schema="PUBLIC", paramstyle="qmark")) as c:
        yield c


def query_id(cursor: SnowflakeCursor) -> str:
    assert cursor.sfqid is not None, "the server answered without a query id"
    return cursor.sfqid


def rows(cursor: SnowflakeCursor, sql: str, params: tuple[Any, ...] | None = None) -> list[Any]:
    done = cursor.execute(sql, params)
    assert done is not None
    return list(done.fetchall())


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20  # bounds a broken emulator, never the measure
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


# -- asynchronous queries ----------------------------------------------------------------------


def test_it_answers_an_asynchronous_query_at_once_and_reports_it_running(conn: SnowflakeConnection) -> None:
    cursor = conn.cursor()
    answer = cursor.execute_async("SELECT SYSTEM$WAIT(0.5) AS w, ? AS i", (7,))
    qid = query_id(cursor)
    assert answer["queryId"] == qid and answer["getResultUrl"] == f"/queries/{qid}/result"
    assert conn.get_query_status(qid) == QueryStatus.RUNNING
    wait_until(lambda: conn.get_query_status(qid) == QueryStatus.SUCCESS, "the query succeeds")
    result = conn.cursor()
    result.query_result(qid)
    assert result.fetchall() == [("waited 0.5 seconds", 7)]
    assert result.sfqid == qid


def test_it_reports_a_failed_asynchronous_query_with_its_error(conn: SnowflakeConnection) -> None:
    cursor = conn.cursor()
    cursor.execute_async("SELECT * FROM no_such_table")
    qid = query_id(cursor)
    wait_until(lambda: conn.get_query_status(qid) == QueryStatus.FAILED_WITH_ERROR, "the query fails")
    with pytest.raises(ProgrammingError, match="(?i)no_such_table") as info:
        conn.get_query_status_throw_if_error(qid)
    assert info.value.errno == 2003


@pytest.mark.parametrize("how", ["abort_query", "system_cancel_query"])
def test_it_aborts_an_asynchronous_query_by_its_id(conn: SnowflakeConnection, how: str) -> None:
    cursor = conn.cursor()
    cursor.execute_async("SELECT SYSTEM$WAIT(60) AS w")
    qid = query_id(cursor)
    wait_until(lambda: any(q.query_id == qid and q.waiting for q in running_queries()), "the query waits")
    if how == "abort_query":
        assert conn.cursor().abort_query(qid) is True
    else:
        assert rows(conn.cursor(), "SELECT SYSTEM$CANCEL_QUERY(?)", (qid,)) == [(f"query [{qid}] terminated.",)]
    wait_until(lambda: conn.get_query_status(qid) == QueryStatus.ABORTED, "the query is aborted")
    assert not [q for q in running_queries() if q.query_id == qid]
    with pytest.raises(ProgrammingError) as info:
        conn.cursor().query_result(qid)
    assert info.value.errno == 604


def test_it_ends_a_statement_at_its_statement_timeout(conn: SnowflakeConnection) -> None:
    cursor = conn.cursor()
    cursor.execute_async("SELECT SYSTEM$WAIT(60) AS w", _statement_params={"STATEMENT_TIMEOUT_IN_SECONDS": 1})
    qid = query_id(cursor)
    wait_until(lambda: conn.get_query_status(qid) == QueryStatus.ABORTED, "the statement times out")
    with pytest.raises(ProgrammingError, match="timeout of 1 second") as info:
        conn.cursor().query_result(qid)
    assert info.value.errno == 630


def test_it_runs_several_asynchronous_queries_of_one_session(conn: SnowflakeConnection) -> None:
    ids = []
    for i in range(5):
        cursor = conn.cursor()
        cursor.execute_async("SELECT ? AS n", (i,))
        ids.append(query_id(cursor))
    for i, qid in enumerate(ids):
        wait_until(lambda: conn.get_query_status(qid) == QueryStatus.SUCCESS, "each query succeeds")  # noqa: B023
        result = conn.cursor()
        result.query_result(qid)
        assert result.fetchall() == [(i,)]


def test_it_forgets_the_earliest_ended_results_past_its_bound_and_keeps_running_queries(
    conn: SnowflakeConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asyncexec, "MAX_KEPT", 3)
    monkeypatch.setattr(asyncexec, "_queries", {})  # none of the other tests' queries
    monkeypatch.setattr(asyncexec, "_ended", deque())
    long = conn.cursor()
    long.execute_async("SELECT SYSTEM$WAIT(60) AS w")
    running_id = query_id(long)
    ended = []
    for i in range(6):  # each submit forgets what is past the bound, before it is kept
        cursor = conn.cursor()
        cursor.execute_async("SELECT ? AS n", (i,))
        ended.append(query_id(cursor))
        wait_until(lambda: conn.get_query_status(ended[-1]) == QueryStatus.SUCCESS, "the query succeeds")
    assert [conn.get_query_status(qid) for qid in ended] == [QueryStatus.NO_DATA] * 3 + [QueryStatus.SUCCESS] * 3
    result = conn.cursor()
    result.query_result(ended[-1])
    assert result.fetchall() == [(5,)]
    assert conn.get_query_status(running_id) == QueryStatus.RUNNING  # the first submitted, never dropped
    assert conn.cursor().abort_query(running_id) is True
    # Ended while the test's table is in place, not after monkeypatch puts the shared one back.
    wait_until(lambda: conn.get_query_status(running_id) == QueryStatus.ABORTED, "the running query is aborted")


def count_rows(conn: SnowflakeConnection, table: str) -> int:
    (n,) = rows(conn.cursor(), f"SELECT COUNT(*) FROM {table}")[0]
    return int(n)


def test_it_reads_what_was_committed_before_a_waiting_query_began(conn: SnowflakeConnection) -> None:
    # Snowflake's READ COMMITTED: a statement sees the data committed before it began.
    conn.cursor().execute("CREATE OR REPLACE TABLE seen (n INT)")
    conn.cursor().execute("INSERT INTO seen VALUES (1)")
    cursor = conn.cursor()
    cursor.execute_async("SELECT SYSTEM$WAIT(1) AS w, (SELECT COUNT(*) FROM seen) AS n")
    qid = query_id(cursor)
    wait_until(lambda: any(q.query_id == qid and q.waiting for q in running_queries()), "the query has read")
    # The same session: its statements take turns on the session's database connection.
    conn.cursor().execute("INSERT INTO seen VALUES (2)")
    assert conn.get_query_status(qid) == QueryStatus.RUNNING, "the insert was meant to land during the wait"
    wait_until(lambda: conn.get_query_status(qid) == QueryStatus.SUCCESS, "the query succeeds")
    result = conn.cursor()
    result.query_result(qid)
    assert result.fetchall() == [("waited 1 seconds", 1)]
    assert count_rows(conn, "seen") == 2


def test_it_leaves_nothing_done_by_a_write_cancelled_during_its_wait(conn: SnowflakeConnection) -> None:
    conn.cursor().execute("CREATE OR REPLACE TABLE kept (n INT)")
    cursor = conn.cursor()
    cursor.execute_async("INSERT INTO kept SELECT 5 FROM (SELECT SYSTEM$WAIT(60) AS w)")
    qid = query_id(cursor)
    wait_until(lambda: any(q.query_id == qid and q.waiting for q in running_queries()), "the insert waits")
    assert conn.cursor().abort_query(qid) is True
    wait_until(lambda: conn.get_query_status(qid) == QueryStatus.ABORTED, "the insert is aborted")
    assert count_rows(conn, "kept") == 0


# -- sign-in -----------------------------------------------------------------------------------


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_body(key: rsa.RSAPrivateKey) -> str:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "".join(line for line in pem.decode().splitlines() if "-----" not in line)


def sign_in(emulator: dict[str, Any], **kwargs: Any) -> SnowflakeConnection:
    base = {k: v for k, v in emulator.items() if k not in ("user", "password")}
    return snowflake.connector.connect(**base, **kwargs)


def test_it_verifies_a_key_pair_jwt_against_the_users_registered_key(
    emulator: dict[str, Any], conn: SnowflakeConnection
) -> None:
    name = f"KP_{uuid.uuid4().hex[:6].upper()}"
    key = new_key()
    with closing(sign_in(emulator, user="fake", password="snow", role="ACCOUNTADMIN")) as root:
        root.cursor().execute(f"CREATE USER {name} RSA_PUBLIC_KEY='{public_body(key)}'")
    with closing(sign_in(emulator, user=name, authenticator="SNOWFLAKE_JWT", private_key=key)) as signed_in:
        assert rows(signed_in.cursor(), "SELECT 1") == [(1,)]
        assert signed_in.role == "PUBLIC"
    with pytest.raises(DatabaseError, match="JWT token is invalid"):
        sign_in(emulator, user=name, authenticator="SNOWFLAKE_JWT", private_key=new_key())


def test_it_refuses_a_wrong_password_and_a_role_not_granted(emulator: dict[str, Any]) -> None:
    with pytest.raises(DatabaseError, match="Incorrect username or password"):
        sign_in(emulator, user="fake", password="wrong")
    with pytest.raises(DatabaseError, match="not granted to this user"):
        sign_in(emulator, user="fake", password="snow", role="NO_SUCH_ROLE")


# -- sessions and roles ------------------------------------------------------------------------


def test_it_expires_a_session_so_that_it_must_sign_in_again(emulator: dict[str, Any]) -> None:
    with closing(sign_in(emulator, user="fake", password="snow")) as session:
        session.cursor().execute("SELECT 1")
        assert accounts.expire_sessions("fake") >= 1
        with pytest.raises(ProgrammingError) as info:
            session.cursor().execute("SELECT 1")
        assert info.value.errno == 390114  # renewal refused: the master token expired too


def test_it_renews_an_expired_session_token_while_the_master_token_lives(emulator: dict[str, Any]) -> None:
    with closing(sign_in(emulator, user="fake", password="snow")) as session:
        session.cursor().execute("SELECT 1")
        accounts.expire_session_tokens("fake")
        assert rows(session.cursor(), "SELECT 2") == [(2,)]


def test_it_refuses_writes_under_a_custom_role(emulator: dict[str, Any]) -> None:
    table = f"T_{uuid.uuid4().hex[:6]}"
    with closing(sign_in(emulator, user="fake", password="snow", role="ACCOUNTADMIN", database="PROTO")) as root:
        cursor = root.cursor()
        cursor.execute("CREATE ROLE IF NOT EXISTS READER")
        cursor.execute("GRANT ROLE READER TO USER fake")
        cursor.execute(f"CREATE TABLE PUBLIC.{table} (id INT)")
        cursor.execute(f"INSERT INTO PUBLIC.{table} VALUES (1)")
        with pytest.raises(ProgrammingError, match="read-only"):
            cursor.execute(f"GRANT INSERT ON TABLE PUBLIC.{table} TO ROLE READER")
    with closing(
        sign_in(emulator, user="fake", password="snow", role="READER", database="PROTO", schema="PUBLIC")
    ) as reader:
        cursor = reader.cursor()
        assert rows(cursor, f"SELECT COUNT(*) FROM {table}") == [(1,)]
        for write in (f"DELETE FROM {table}", f"UPDATE {table} SET id = 2", f"DROP TABLE {table}", "CALL p()"):
            with pytest.raises(ProgrammingError, match="Insufficient privileges") as info:
                cursor.execute(write)
            assert info.value.errno == 3001
        assert rows(cursor, f"SELECT id FROM {table}") == [(1,)]
