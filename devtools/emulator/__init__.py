"""The project's Snowflake emulator: fakesnow's HTTP server, reached by the real connector.

Run it with `python -m devtools.emulator --host 127.0.0.1 --port 8765 --data-dir var/snowflake`,
or in tests with `serve_in_thread()`, which yields the connector's keyword arguments:

    with serve_in_thread(data_dir=tmp_path) as kwargs:
        conn = snowflake.connector.connect(**kwargs, database="FANOUT", schema="BRONZE")

What it adds to fakesnow 0.12:

- Persistence: with a data dir, each database is a DuckDB file there (fakesnow's db_path), and
  so are stages, file formats and procedures (`_fs_global.db`); staged files live in
  `<data dir>/stage`. A restart keeps them all. Without one, everything is in memory and a
  temporary folder.
- `SYSTEM$WAIT(amount [, 'SECONDS' | 'MILLISECONDS' | 'MICROSECONDS' | 'NANOSECONDS' |
  'MINUTES' | 'HOURS'])` anywhere in a statement, with a literal or bound amount; it returns
  `waited <amount> <unit>`. The wait is an asyncio sleep, so waits overlap and cost no thread.
  A call is evaluated once per statement, not once per row.
- Real aborts: the connector's `execute(..., timeout=N)` posts an abort-request for the running
  query's requestId; the emulator ends its wait or interrupts its DuckDB work, and the query
  answers with Snowflake's 000604 "SQL execution canceled". `SELECT SYSTEM$CANCEL_QUERY('<id>')`
  does the same for another running query, by its query id or requestId. `running_queries()`
  and `cancel_query()` give tests the same view.
- Asynchronous queries (`cursor.execute_async`): the query-request answers at once with code
  333334 and the query id; `/monitoring/queries/<id>` says RUNNING, then SUCCESS,
  FAILED_WITH_ERROR or ABORTED; `/queries/<id>/result` returns the result; an abort by query id
  (`/queries/<id>/abort-request`, `SYSTEM$CANCEL_QUERY('<id>')`) stops it; a statement's
  STATEMENT_TIMEOUT_IN_SECONDS ends it with 000630 (devtools.emulator.asyncexec).
- Sign-in, sessions and roles as Snowflake checks them (devtools.emulator.accounts): users with
  a password, registered RSA public keys (key-pair JWTs are verified against them), OAuth and
  programmatic access tokens; roles granted to users, custom roles read-only; session expiry on
  demand (`POST /emulator/expire-sessions`), which the connector meets as 390112 then 390114.
  `GET /emulator/queries` lists the running queries for tests in another process.
- `LIST @stage[/path/prefix] [PATTERN = '<regex>']` and `REMOVE|RM @stage[/path] [PATTERN = ...]`
  (see devtools.emulator.stage for how paths and patterns match).
- Stored procedures, `LANGUAGE SQL` only:

      CREATE [OR REPLACE] PROCEDURE [IF NOT EXISTS] [db.][schema.]name(arg TYPE [DEFAULT expr], ...)
        RETURNS <type> LANGUAGE SQL [EXECUTE AS CALLER|OWNER] [other clauses, ignored]
        AS $$ <body> $$            -- or AS '<body>'
      DROP PROCEDURE [IF EXISTS] name(TYPE, ...)
      CALL name(arg, ...)          -- literals, expressions, or ? / :1 bound parameters

  A procedure is identified by its name and number of arguments. CALL returns one row with one
  column named after the procedure, holding the RETURN value cast to the RETURNS type.
  The body may use exactly this subset of Snowflake Scripting:

      [DECLARE
          name TYPE [DEFAULT expr | := expr];
          ...]
      BEGIN
          <SQL statement>;                   -- INSERT, UPDATE, DELETE, MERGE, COPY INTO, CREATE,
                                             -- SELECT, TRUNCATE, CALL, LIST, REMOVE...; `:name` is
                                             -- an argument or variable, bound as a parameter
          LET name [TYPE] := expr;           -- also LET name [TYPE] DEFAULT expr
          name := expr;
          EXECUTE IMMEDIATE <string expr> [USING (name, ...)];
          NULL;
          RETURN [expr];
      END;

  An expr is a scalar SQL expression or a `(SELECT ...)` subquery; in it a bare name (or
  `:name`) is a variable, except inside the subquery, where bare names are columns. Strings
  concatenate with `||`, and `OBJECT_CONSTRUCT(...)` returns a VARIANT (a JSON string through
  the connector). `SQLROWCOUNT` holds the rows the last SQL statement affected if it was
  INSERT, UPDATE, DELETE, MERGE or COPY INTO (for COPY, the rows loaded over all files), and
  NULL after any other statement, as in Snowflake since the 2025_01 bundle; so do `SQLFOUND`
  and `SQLNOTFOUND`. A variable declared with a type keeps it: assignments are cast to it.
  Statements run one by one through the session's fakesnow cursor and, unless the body says
  BEGIN TRANSACTION ... COMMIT, each commits on its own, so when one fails the earlier ones
  stay done; the CALL then fails with "Uncaught exception of type 'STATEMENT_ERROR' on line L
  at position P : <the database's message>" and the failing statement's error code.

  Not supported, with an error naming the construct (from CREATE PROCEDURE when the body
  shows it, else when the statement runs): other languages, RETURNS TABLE, IF/CASE/FOR/WHILE/
  LOOP/REPEAT, nested BEGIN ... END blocks, EXCEPTION handlers, RAISE, cursors and RESULTSETs,
  SELECT ... INTO :var (use `LET v := (SELECT ...)`), CALL ... INTO, named arguments
  (`name => value`), EXECUTE IMMEDIATE of a scripting block, and undeclared variables.

fakesnow's state (sessions, the shared database, the stage folder) is global to its module,
so one emulator runs per process at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from typing import Any

import uvicorn

from devtools.emulator.running import RunningQueryInfo, cancel_query, running_queries
from devtools.emulator.server import EmulatorServer, build_app

__all__ = ["EmulatorServer", "RunningQueryInfo", "build_app", "cancel_query", "running_queries", "serve_in_thread"]


def connection_kwargs(host: str, port: int) -> dict[str, Any]:
    """Keyword arguments for snowflake.connector.connect() to reach an emulator."""
    return {
        "user": "fake",
        "password": "snow",
        "account": "fakesnow",
        "host": host,
        "port": port,
        "protocol": "http",
        # the connector would otherwise post telemetry to the emulator, which has no such route
        "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    }


@contextmanager
def serve_in_thread(
    host: str = "127.0.0.1", port: int = 0, data_dir: str | PathLike[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Run the emulator in a thread; yield connect() kwargs. port=0 picks a free port."""
    config = uvicorn.Config(
        build_app(data_dir), host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = EmulatorServer(config)
    thread = threading.Thread(target=server.run, name="snowflake emulator", daemon=True)
    thread.start()
    while thread.is_alive() and not server.started:
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("the Snowflake emulator failed to start")
    try:
        yield connection_kwargs(host, server.port)
    finally:
        server.should_exit = True
        thread.join()
