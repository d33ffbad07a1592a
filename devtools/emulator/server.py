"""fakesnow's Starlette app, with persistence, real aborts and the statements the app needs.

Sign-in, sessions and roles are the emulator's own (devtools.emulator.accounts), and so are
asynchronous queries (devtools.emulator.asyncexec). The query request first answers what fakesnow lacks
(LIST with a path, REMOVE, CREATE/DROP/CALL PROCEDURE, SYSTEM$WAIT and SYSTEM$CANCEL_QUERY)
and hands everything else to fakesnow's handler; both run under a registry entry keyed by the
connector's requestId, so the abort request can stop the query: it ends a wait, and interrupts
the session's DuckDB connection.

fakesnow keeps its sessions, its shared database and its stage folder in module globals, so
one emulator runs per process at a time; the app installs them when it starts.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import duckdb
import fakesnow.server as fs_server
import snowflake.connector.errors
import uvicorn
from fakesnow import info_schema, macros
from fakesnow.converter import from_binding
from fakesnow.instance import GLOBAL_DATABASE_NAME, FakeSnow
from fakesnow.transforms import show
from fakesnow.transforms import stage as fs_stage
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from devtools.emulator import (
    accounts,
    aggregates,
    asyncexec,
    compiled,
    describe,
    procedures,
    running,
    stage,
    system_functions,
)
from devtools.emulator.results import cancelled_response, cursor_response, error_response, rows_response
from devtools.emulator.running import RunningQuery
from devtools.emulator.sqltext import first_words

logger = logging.getLogger("devtools.emulator")

QUERY_PATH = "/queries/v1/query-request"
ABORT_PATH = "/queries/v1/abort-request"
LOGIN_PATH = "/session/v1/login-request"
OURS = (
    QUERY_PATH,
    ABORT_PATH,
    LOGIN_PATH,
    "/session",
    "/session/heartbeat",
    "/session/token-request",
    "/monitoring/queries/{sfqid}",
)

_active = False


def build_app(data_dir: str | os.PathLike[str] | None = None) -> Starlette:
    """The emulator's ASGI app. With data_dir, databases and stage files persist there."""
    routes: list[BaseRoute] = [
        Route(QUERY_PATH, query_request, methods=["POST"]),
        Route(ABORT_PATH, abort_request, methods=["POST"]),
        Route(LOGIN_PATH, login_request, methods=["POST"]),
        Route("/session", session_request, methods=["POST"]),
        Route("/session/heartbeat", session_request, methods=["POST"]),
        Route("/session/token-request", token_request, methods=["POST"]),
        Route("/monitoring/queries/{sfqid}", monitoring_request, methods=["GET"]),
        Route("/queries/{sfqid}/result", result_request, methods=["GET"]),
        Route("/queries/{sfqid}/abort-request", abort_by_id_request, methods=["POST"]),
        # The emulator's own controls, for tests in another process (not Snowflake routes).
        Route("/emulator/expire-sessions", expire_sessions_request, methods=["POST"]),
        Route("/emulator/oauth-tokens", oauth_token_request, methods=["POST"]),
        Route("/emulator/queries", running_request, methods=["GET"]),
    ]
    routes += [r for r in fs_server.routes if getattr(r, "path", None) not in OURS]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with _installed(Path(data_dir) if data_dir is not None else None):
            yield

    return Starlette(routes=routes, lifespan=lifespan)


class EmulatorServer(uvicorn.Server):
    """uvicorn's server, which cancels running queries before it waits for them on shutdown."""

    def __init__(self, config: uvicorn.Config, announce: bool = False) -> None:
        super().__init__(config)
        self.announce = announce

    @property
    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.announce:
            print(f"snowflake emulator listening on http://{self.config.host}:{self.port}", flush=True)

    async def shutdown(self, sockets: Any = None) -> None:
        # a 30 s SYSTEM$WAIT or a long scan would otherwise hold the shutdown until it ends
        running.cancel_all()
        asyncexec.cancel_all()
        await super().shutdown(sockets)


# -- startup and shutdown ---------------------------------------------------------------------


@asynccontextmanager
async def _installed(data_dir: Path | None) -> AsyncIterator[None]:
    global _active
    if _active:
        raise RuntimeError("an emulator is already running in this process (fakesnow's state is global)")
    _active = True
    aggregates.install()
    compiled.install()
    describe.install()
    saved = fs_server.shared_fs, fs_stage.LOCAL_BUCKET_PATH
    if data_dir is None:
        bucket = tempfile.mkdtemp(prefix="emulator_stage_")
    else:
        bucket = str((data_dir / "stage").resolve())
        os.makedirs(bucket, exist_ok=True)  # noqa: ASYNC240 - once, at startup
    try:
        fs = await run_in_threadpool(_open, data_dir)
    except BaseException:
        _active = False
        raise
    fs_server.shared_fs = fs
    fs_stage.LOCAL_BUCKET_PATH = bucket
    accounts.reset()
    _quiet_interrupts()
    try:
        yield
    finally:
        running.cancel_all()
        asyncexec.cancel_all()
        await run_in_threadpool(_close, fs)
        fs_server.shared_fs, fs_stage.LOCAL_BUCKET_PATH = saved
        if data_dir is None:
            shutil.rmtree(bucket, ignore_errors=True)
        _active = False


def _open(data_dir: Path | None) -> FakeSnow:
    if data_dir is None:
        return FakeSnow()
    data_dir.mkdir(parents=True, exist_ok=True)
    fs = FakeSnow(db_path=data_dir)
    duck = fs.duck_conn
    # fakesnow keeps stages, file formats and procedures in an in-memory _fs_global database:
    # back it with a file so they survive a restart, as each database's file does.
    duck.execute(f"DETACH {GLOBAL_DATABASE_NAME}")
    duck.execute(f"ATTACH {_sql_string(data_dir / (GLOBAL_DATABASE_NAME + '.db'))} AS {GLOBAL_DATABASE_NAME}")
    duck.execute(info_schema.fs_global_creation_sql())
    duck.execute(show.fs_global_creation_sql())
    # fakesnow attaches a database when a session names it; attach the existing ones now so
    # that qualified names (other_db.schema.table) resolve from any session after a restart
    for db_file in sorted(data_dir.glob("*.db")):
        name = db_file.stem
        if name == GLOBAL_DATABASE_NAME or not name.isidentifier():
            continue
        duck.execute(f"ATTACH IF NOT EXISTS {_sql_string(db_file)} AS {name}")
        duck.execute(info_schema.per_db_creation_sql(name))
        duck.execute(macros.creation_sql(name))
    return fs


def _close(fs: FakeSnow) -> None:
    # Every session holds a cursor on the shared database; all must close before its files are
    # released (and checkpointed), so that a new emulator in this process can open them again.
    for token, conn in list(fs_server.sessions.items()):
        del fs_server.sessions[token]
        try:
            conn.close()
        except duckdb.Error:
            logger.debug("closing a session failed", exc_info=True)
    fs.duck_conn.close()


def _sql_string(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class _InterruptFilter(logging.Filter):
    """fakesnow logs an interrupted statement as an unhandled error; here it is a cancel."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], duckdb.InterruptException))


def _quiet_interrupts() -> None:
    fs_logger = logging.getLogger("fakesnow.server")
    if not any(isinstance(f, _InterruptFilter) for f in fs_logger.filters):
        fs_logger.addFilter(_InterruptFilter())


# -- requests ---------------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return dict(json.loads(body))


def _with_body(request: Request, body: dict[str, Any]) -> Request:
    """A copy of request carrying another (uncompressed) JSON body, for fakesnow's handler."""
    data = json.dumps(body).encode()
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"content-encoding", b"content-length")]
    scope = {**request.scope, "headers": [*headers, (b"content-length", str(len(data)).encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    return Request(scope, receive)


def _no_session() -> JSONResponse:
    # Snowflake answers a request whose session it does not know with this code, over HTTP 200
    return JSONResponse(
        {"data": None, "code": "390104", "message": "User must login again to access the service.", "success": False}
    )


async def login_request(request: Request) -> Response:
    body = await _json_body(request)
    data = body.setdefault("data", {})
    data.setdefault("SESSION_PARAMETERS", {})
    try:
        user, role = accounts.sign_in(data, request.query_params.get("roleName"))
    except accounts.SignInError as e:
        return e.response()
    response = await fs_server.login_request(_with_body(request, body))
    payload = json.loads(bytes(response.body))
    session = accounts.open_session(payload["data"]["token"], user, role)
    payload["data"].update(
        masterToken=session.master_token,
        validityInSeconds=accounts.SESSION_VALIDITY,
        masterValidityInSeconds=accounts.MASTER_VALIDITY,
    )
    payload["data"]["sessionInfo"]["roleName"] = role
    return JSONResponse(payload)


async def token_request(request: Request) -> Response:
    body = await _json_body(request)
    master = (request.headers.get("Authorization") or "")[17:-1]
    renewed = accounts.renew(master, str(body.get("oldSessionToken") or ""))
    if isinstance(renewed, accounts.SignInError):
        return renewed.response()
    old, new = renewed
    fs_server.sessions[new] = fs_server.sessions.pop(old)
    return JSONResponse(
        {
            "data": {
                "sessionToken": new,
                "validityInSecondsST": accounts.SESSION_VALIDITY,
                "masterToken": master,
                "validityInSecondsMT": accounts.MASTER_VALIDITY,
            },
            "success": True,
        }
    )


async def session_request(request: Request) -> Response:
    """Heartbeat and sign-out: both need a live session."""
    session = accounts.session_of(request)
    if session is None:
        return _no_session()
    if (expired := accounts.expired_response(session)) is not None:
        return expired
    token = (request.headers.get("Authorization") or "")[17:-1]
    if request.query_params.get("delete"):
        accounts.forget(token)
        fs_server.sessions.pop(token, None)
    return JSONResponse({"data": None, "code": None, "message": None, "success": True})


async def query_request(request: Request) -> Response:
    session = accounts.session_of(request)
    if (expired := accounts.expired_response(session)) is not None:
        return expired
    try:
        conn = fs_server.to_conn(fs_server.to_token(request))
    except fs_server.ServerError:
        return _no_session()
    assert session is not None  # every fakesnow session here was opened by login_request

    body = await _json_body(request)
    request_id = request.query_params.get("requestId") or str(uuid.uuid4())
    query = RunningQuery(request_id, body["sqlText"], conn, asyncio.get_running_loop())
    running.register(query)
    parameters = body.get("parameters") or {}
    timer = None
    if (seconds := float(parameters.get("STATEMENT_TIMEOUT_IN_SECONDS") or 0)) > 0:
        timer = query.time_out_after(seconds)

    async def answer() -> Response:
        try:
            return await _guarded(_with_body(request, body), body, query, session)
        finally:
            if timer is not None:
                timer.cancel()

    if body.get("asyncExec") and not body.get("describeOnly"):
        return asyncexec.submit(query, session.user, answer)
    try:
        return await answer()
    finally:
        running.unregister(query)


async def _guarded(request: Request, body: dict[str, Any], query: RunningQuery, session: accounts.Session) -> Response:
    try:
        accounts.check_privileges(session, body["sqlText"])
        return await _answer(request, body, query, session)
    except snowflake.connector.errors.Error as e:
        return error_response(e)
    except Exception as e:
        # a bug or an unsupported corner: report it as a failed statement rather than an HTTP 500,
        # which the connector would retry for minutes
        logger.exception("emulator failed on %r", body["sqlText"])
        return error_response(
            snowflake.connector.errors.ProgrammingError(msg=f"emulator error: {e!r}", errno=9999, sqlstate="99999")
        )


async def _answer(request: Request, body: dict[str, Any], query: RunningQuery, session: accounts.Session) -> Response:
    query.raise_if_cancelled()  # aborted before it arrived
    sql: str = body["sqlText"]
    conn = query.conn
    describe_only = bool(body.get("describeOnly"))
    words = first_words(sql, 6)
    verb = words[0] if words else ""

    if accounts.handles(words):
        if describe_only:
            return rows_response(conn, [("status", "VARCHAR")], [])
        names, *rows = accounts.run(session, sql)
        return rows_response(conn, [(name, "VARCHAR") for name in names], rows)
    if verb in ("LIST", "LS"):
        rows = [] if describe_only else await query.run_in_thread(stage.list_files, conn, sql, _values(body))
        return rows_response(conn, stage.LIST_COLUMNS, rows)
    if verb in ("REMOVE", "RM"):
        rows = [] if describe_only else await query.run_in_thread(stage.remove_files, conn, sql, _values(body))
        return rows_response(conn, stage.REMOVE_COLUMNS, rows)
    if procedures.is_create_procedure(sql) or words[:2] == ["DROP", "PROCEDURE"]:
        if describe_only:
            return rows_response(conn, [("status", "VARCHAR")], [])
        run = procedures.create if verb == "CREATE" else procedures.drop
        return rows_response(conn, [("status", "VARCHAR")], [(await run(query, sql),)])
    if verb == "CALL":
        if describe_only:
            return cursor_response(conn, await procedures.describe_call(query, sql))
        return cursor_response(conn, await procedures.call(query, sql, _values(body)))

    waits: list[float] = []
    if system_functions.mentioned(sql):
        bindings = body.get("bindings") or {}
        positional = [bindings[k] for k in sorted(bindings, key=int)] if all(k.isdigit() for k in bindings) else None
        sql, remaining = await system_functions.rewrite(sql, positional, query, from_binding, describe_only, waits)
        new_bindings = {str(n): b for n, b in enumerate(remaining or [], start=1)} or None
        request = _with_body(request, {**body, "sqlText": sql, "bindings": new_bindings})

    if waits and verb in ("SELECT", "WITH"):
        response = await _read_while_waiting(query, request, sum(waits))
    else:
        if waits:
            # A write must not take effect before its wait: a cancel during the wait leaves nothing done.
            await query.wait(sum(waits))
        response = await query.interruptible(fs_server.query_request(request))
    if query.cancelled and not json.loads(bytes(response.body)).get("success"):
        # fakesnow reports the interrupted statement as an internal error
        return cancelled_response(query)
    if response.status_code >= 500:
        # fakesnow answers what it cannot run with HTTP 500, which the connector retries until
        # its deadline: report it as the failed statement it is, with fakesnow's message.
        message = json.loads(bytes(response.body)).get("message") or "unsupported statement"
        return error_response(
            snowflake.connector.errors.ProgrammingError(
                msg=f"the emulator cannot run this statement: {message}", errno=9999, sqlstate="0A000"
            )
        )
    return response


async def _read_while_waiting(query: RunningQuery, request: Request, seconds: float) -> Response:
    """A query's read runs as it starts; its SYSTEM$WAIT holds only the answer.

    A Snowflake statement sees the data committed before it began (READ COMMITTED,
    https://docs.snowflake.com/en/sql-reference/transactions#isolation-level), not what was
    committed while it waited, so the read comes first and the wait covers what is left of
    the time. It also keeps the emulator's transpiling off the end of the wait, where every
    query of a burst would queue for it. The query shows as waiting only once it has read.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await query.interruptible(fs_server.query_request(request))
    await query.wait(seconds - (loop.time() - started))  # raises QueryCancelled if cancelled meanwhile
    return response


def _values(body: dict[str, Any]) -> list[Any]:
    """The request's positional bindings as Python values."""
    bindings: dict[str, dict[str, Any]] = body.get("bindings") or {}
    if not all(k.isdigit() for k in bindings) or any(isinstance(b.get("value"), list) for b in bindings.values()):
        raise snowflake.connector.errors.ProgrammingError(
            msg="the emulator binds only positional scalar parameters here (paramstyle qmark or numeric)",
            errno=9999,
            sqlstate="0A000",
        )
    return [from_binding(bindings[k]) for k in sorted(bindings, key=int)]


def _live_session(request: Request) -> accounts.Session | JSONResponse:
    session = accounts.session_of(request)
    if session is None:
        return _no_session()
    return accounts.expired_response(session) or session


async def abort_request(request: Request) -> Response:
    session = _live_session(request)
    if isinstance(session, JSONResponse):
        return session
    body = await _json_body(request)
    if request_id := body.get("requestId"):
        logger.info("abort requested for %s", request_id)
        running.abort(str(request_id))
    return JSONResponse({"data": None, "code": None, "message": None, "success": True})


async def monitoring_request(request: Request) -> Response:
    session = _live_session(request)
    if isinstance(session, JSONResponse):
        return session
    return asyncexec.monitoring(request.path_params["sfqid"], session.user)


async def result_request(request: Request) -> Response:
    session = _live_session(request)
    if isinstance(session, JSONResponse):
        return session
    return asyncexec.result(request.path_params["sfqid"], session.user)


async def abort_by_id_request(request: Request) -> Response:
    session = _live_session(request)
    if isinstance(session, JSONResponse):
        return session
    query_id = request.path_params["sfqid"]
    stopped = asyncexec.abort(query_id, session.user)
    if not stopped and (sync := running.find(query_id)) is not None:
        sync.cancel()
        stopped = True
    return JSONResponse({"data": None, "code": None, "message": None, "success": stopped})


async def expire_sessions_request(request: Request) -> Response:
    body = await _json_body(request) if await request.body() else {}
    user = body.get("user")
    count = accounts.expire_session_tokens(user) if body.get("renewable") else accounts.expire_sessions(user)
    return JSONResponse({"expired": count})


async def oauth_token_request(request: Request) -> Response:
    body = await _json_body(request)
    try:
        token = accounts.issue_oauth_token(str(body["user"]), body.get("role"))
    except KeyError:
        return JSONResponse({"error": "unknown user"}, status_code=400)
    return JSONResponse({"access_token": token, "token_type": "Bearer"})


async def running_request(request: Request) -> Response:
    return JSONResponse(
        {
            "queries": [
                {
                    "request_id": q.request_id,
                    "query_id": q.query_id,
                    "sql_text": q.sql_text,
                    "waiting": q.waiting,
                    "cancelled": q.cancelled,
                }
                for q in running.running_queries()
            ]
        }
    )
