"""Snowflake through the production connector, with asynchronous queries.

A running query holds no thread. Each statement is submitted with the connector's
asynchronous execution (`cursor.execute_async`, asyncExec: the server answers at once with
the query id), its status is polled from the event loop through the connector's monitoring
call (`connection.get_query_status`, GET /monitoring/queries/<id>) with a backoff that starts
at a few milliseconds (for a text that ran before: first when its shortest recent run would
have ended), and only the result's download (`cursor.query_result`, GET
/queries/<id>/result) runs on a thread. Each HTTP round trip is a short call on an executor;
the wait between them is an asyncio sleep.

Workloads: panels, exports, pipeline, health and cancel each have their own bounded share of
the source: a limit on queries in flight (FANOUT_SOURCES["snowflake"]["concurrency"]) and
their own executor for the round trips and downloads, so two slow exports cannot make a panel
wait for a thread, and the Cancel button always finds one.

Deadlines and cancellation: a deadline or a cancelled caller (browser gone, TaskGroup,
pipeline stopped) aborts the query on the server by its query id (or, before the id is known,
by the request id Fanout chose), on the cancel workload's own executor. The statement also
carries STATEMENT_TIMEOUT_IN_SECONDS, so the warehouse ends it even if this process dies.

Sessions: pooled per role, discarded when older than max_age, kept alive by the connector's
heartbeat, and an expired or invalid session (the connector's session-expiry error codes)
is discarded and the call retried once on a fresh session.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib.util
import math
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import snowflake.connector
import snowflake.connector.errors as sf_errors
from django.conf import settings

from project.metrics import POOL_SIZE, track_call
from project.sources import inflight
from project.sources.base import Params, QueryResult, to_qmark
from project.sources.errors import QueryCancelled, QueryError, SourceError, SourceTimeout, SourceUnavailable
from project.sources.readonly import NotReadOnly, check_read_only
from project.sources.workloads import WORKLOADS, Shares, resolve_workload

T = TypeVar("T")

if importlib.util.find_spec("opentelemetry") is None:
    # The connector imports OpenTelemetry's propagator inside every HTTP request it makes
    # (snowflake/connector/network.py, SnowflakeRestful.request) and carries on without it;
    # when the package is absent each attempt searches sys.path again, 0.18 ms of a 1.4 ms
    # status poll. None in sys.modules makes that import fail at once, as it would anyway.
    sys.modules.setdefault("opentelemetry", None)  # type: ignore[arg-type]
DEFAULT_CONCURRENCY: dict[str, int] = {"panels": 64, "exports": 4, "pipeline": 4, "health": 2, "cancel": 4}

# Snowflake's "SQL execution canceled" and "statement reached its timeout" error numbers.
CANCELLED = 604
STATEMENT_TIMED_OUT = 630
# The session is gone and only a new sign-in helps (snowflake/connector/network.py: the GS
# codes for an expired session, master token not found / expired / invalid; 390104 "User
# must login again"; 390111 "session no longer exists"; 250002 the connector's "Connection
# is closed"). The connector itself renews a 390112 while the master token lives.
SESSION_GONE = frozenset({390104, 390111, 390112, 390113, 390114, 390115, 250002})
DML_KEYWORDS = {"INSERT", "UPDATE", "DELETE", "MERGE"}

# Status polling: each poll is one HTTP round trip (about 1.4 ms of the connector's CPU here,
# measured, and 0.7 ms of the emulator's). The first comes POLL_FIRST after the submit (asking
# at once only finds the query just accepted) and the interval doubles while under 40 ms;
# after that it is POLL_RATIO of the time the query has run (the wait adds at most that share
# to it). No interval is shorter than the source's queries in flight / POLL_BUDGET, so that
# many queries at once cost at most POLL_BUDGET polls a second, nor longer than POLL_MAX.
POLL_FIRST = 0.005
POLL_RATIO = 0.15
POLL_BUDGET = 400.0
POLL_MAX = 1.0
# A statement text that ran before is first asked about when its shortest recent run (of the
# last LEARN_RUNS) would have ended, not on the schedule above: dashboards repeat the same
# texts with other values, and a 1 s query then costs one or two polls instead of five. That
# wait is cut into steps of at most LEARNED_STEP and half the time left before the deadline,
# so a run quicker than the text's earlier ones (other values, Snowflake's result cache)
# waits at most LEARNED_STEP longer than it ran, and never past its deadline. One run in
# PROBE_EVERY of a text polls on the schedule again, so a query that got faster is noticed;
# LEARN_TEXTS texts are remembered per source (by their hash: a collision only moves a poll).
LEARN_RUNS = 8
LEARNED_STEP = 2.0
PROBE_EVERY = 8
LEARN_TEXTS = 1024
# How long a cancelled caller waits for the abort to reach the server before it lets go.
CANCEL_WAIT = 1.0
# The submit is one HTTP round trip the server answers at once: it gets this share of the
# caller's deadline, so a dead server is reported as unavailable before the deadline passes.
SUBMIT_SHARE = 0.5


def statement_keyword(sql: str) -> str:
    """The statement's first keyword, past comments and parentheses (for row counts only)."""
    import re

    stripped = re.sub(r"^(\s+|--[^\n]*\n?|/\*.*?\*/|\()+", "", sql, flags=re.DOTALL)
    match = re.match(r"[A-Za-z]+", stripped)
    return match.group(0).upper() if match else ""


@dataclass
class _Share:
    """One workload's threads on the source (its limit on calls in flight is in Shares)."""

    name: str
    limit: int
    executor: ThreadPoolExecutor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        # The caller's context variables (the inflight label) go along, as with sync_to_async,
        # without its bookkeeping: a status poll makes this hop several times a query.
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)


class _Learned:
    """How long each statement text's recent runs took, to time its first status poll."""

    def __init__(self) -> None:
        self._runs: OrderedDict[int, tuple[deque[float], int]] = OrderedDict()
        self._lock = threading.Lock()  # one source serves every event loop of the process

    def first_wait(self, text: str) -> float | None:
        """Seconds to wait before the first poll, or None for the regular schedule."""
        key = hash(text)
        with self._lock:
            if (entry := self._runs.get(key)) is None:
                return None
            runs, count = entry
            self._runs[key] = (runs, count + 1)
            self._runs.move_to_end(key)
            return None if count % PROBE_EVERY == PROBE_EVERY - 1 else min(runs)

    def ran(self, text: str, seconds: float) -> None:
        """A run of `text` was seen ended by a poll sent `seconds` after the submit came back."""
        key = hash(text)
        with self._lock:
            runs, count = self._runs.get(key) or (deque(maxlen=LEARN_RUNS), 0)
            runs.append(seconds)
            self._runs[key] = (runs, count)
            self._runs.move_to_end(key)
            while len(self._runs) > LEARN_TEXTS:
                self._runs.popitem(last=False)


@dataclass
class _Pooled:
    conn: snowflake.connector.SnowflakeConnection
    role: str
    born: float


class _SessionGone(Exception):
    def __init__(self, error: sf_errors.Error) -> None:
        super().__init__(str(error))
        self.error = error


class _Call:
    """What one call knows while it runs, for the abort and for the error it ends with."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.request_id = str(uuid.uuid4())
        self.query_id: str | None = None
        self.connecting = False

    def left(self) -> float:
        return self.deadline - time.monotonic()


class SnowflakeSource:
    kind = "snowflake"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.size = int(config["pool_size"])  # threads of the panels workload
        limits = {**DEFAULT_CONCURRENCY, **(config.get("concurrency") or {})}
        self.limits = Shares(name, limits)
        self.shares: dict[str, _Share] = {}
        for workload in WORKLOADS:
            limit = int(limits[workload])
            threads = self.size if workload == "panels" else max(1, min(limit, self.size))
            self.shares[workload] = _Share(
                workload,
                limit,
                ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"snowflake-{name}-{workload}"),
            )
        self.executor = self.shares["panels"].executor
        self._idle: dict[str, deque[_Pooled]] = {}
        self._idle_lock = threading.Lock()
        self._in_flight = 0
        self.polls = 0  # status polls made, for the benchmarks
        self._learned = _Learned()
        self.peak_in_use = 0  # the most queries ever in flight at once
        self.peak_threads = 0  # the most executor threads ever busy at once
        self._busy_threads = 0
        self._counter_lock = threading.Lock()
        POOL_SIZE.labels(name).set(self.limits.total)

    # --- sessions (worker threads only) -------------------------------------------------

    def _role(self, read_only: bool) -> str:
        return (self.config.get("report_role") if read_only else "") or self.config.get("role") or ""

    def _connect(self, role: str, login_timeout: float) -> snowflake.connector.SnowflakeConnection:
        kwargs: dict[str, Any] = {
            "account": self.config["account"],
            "user": self.config.get("user") or None,
            "database": self.config["database"],
            "schema": self.config["schema"],
            "login_timeout": max(1, int(login_timeout)),
            "network_timeout": self.config.get("network_timeout", 60.0),
            "socket_timeout": self.config.get("network_timeout", 60.0),
            # Server-side binding: `?` placeholders travel as bindings, never as SQL text.
            "paramstyle": "qmark",
            # NUMBER with a scale arrives as Decimal, not float, whatever its size (the default
            # turns a wide NUMBER(38, 2) such as a SUM into a float: 1289679.5999999999).
            # https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-api
            "arrow_number_to_decimal": True,
            "application": "Fanout",
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False, "QUERY_TAG": "fanout"},
            # A heartbeat keeps an idle pooled session from expiring overnight.
            "client_session_keep_alive": bool(self.config.get("keep_alive", True)),
        }
        kwargs.update(sign_in_kwargs(self.config))
        if self.config.get("warehouse"):
            kwargs["warehouse"] = self.config["warehouse"]
        if role:
            kwargs["role"] = role
        if self.config.get("host"):
            kwargs.update(host=self.config["host"], port=self.config["port"], protocol=self.config["protocol"])
        return snowflake.connector.connect(**{k: v for k, v in kwargs.items() if v is not None})

    def _take_idle(self, role: str) -> _Pooled | None:
        max_age = float(self.config.get("max_age", 3600.0))
        with self._idle_lock:
            idle = self._idle.setdefault(role, deque())
            while idle:
                pooled = idle.pop()
                if time.monotonic() - pooled.born < max_age and not pooled.conn.is_closed():
                    return pooled
                self._close_later(pooled)
        return None

    def _checkin(self, pooled: _Pooled, healthy: bool) -> None:
        max_age = float(self.config.get("max_age", 3600.0))
        # Idle sessions cost the warehouse nothing; signing in again costs every caller a login.
        idle_max = int(self.config.get("idle_max") or self.limits.total)
        with self._idle_lock:
            idle = self._idle.setdefault(pooled.role, deque())
            if healthy and time.monotonic() - pooled.born < max_age and len(idle) < idle_max:
                idle.append(pooled)
                return
        self._close_later(pooled)

    def _close_later(self, pooled: _Pooled) -> None:
        # Closing signs out over HTTP: not on the caller's path, on the health share's threads.
        def close() -> None:
            with suppress(Exception):
                pooled.conn.close(retry=False)

        self.shares["health"].executor.submit(close)

    # --- one call ------------------------------------------------------------------------

    def _counting(self, fn: Callable[..., T]) -> Callable[..., T]:
        def counted(*args: Any) -> T:
            with self._counter_lock:
                self._busy_threads += 1
                self.peak_threads = max(self.peak_threads, self._busy_threads)
            try:
                return fn(*args)
            finally:
                with self._counter_lock:
                    self._busy_threads -= 1

        return counted

    async def _thread(self, share: _Share, fn: Callable[..., T], *args: Any) -> T:
        return await share.run(self._counting(fn), *args)

    @asynccontextmanager
    async def _slot(self, share: _Share) -> AsyncIterator[None]:
        async with self.limits.slot(share.name):
            with self._counter_lock:
                self._in_flight += 1
                self.peak_in_use = max(self.peak_in_use, self._in_flight)
            try:
                yield
            finally:
                with self._counter_lock:
                    self._in_flight -= 1

    async def _run(
        self,
        operation: str,
        sql: str,
        timeout: float,  # noqa: ASYNC109 - the deadline of the whole call, enforced inside
        read_only: bool,
        workload: str,
        once: Callable[[_Pooled, _Call, _Share], Any],
    ) -> Any:
        """Run `once(session, call, share)` within `timeout`, retrying once on a fresh session
        when the pooled one turns out to be expired."""
        share = self.shares[workload]
        call = _Call(timeout)
        role = self._role(read_only)
        running = inflight.start(self.name, self.kind, sql, timeout, request_id=call.request_id)
        await inflight.publish(running)
        async with track_call(self.name, operation):
            try:
                async with asyncio.timeout(timeout), self._slot(share):
                    for attempt in (1, 2):
                        pooled = await self._checkout(role, share, call)
                        healthy = False
                        try:
                            result = await once(pooled, call, share)
                            healthy = True
                            return result
                        except _SessionGone as gone:
                            # Retry only a statement the server never started: once it has a
                            # query id it may have run, and a write must not run twice.
                            if attempt == 2 or call.query_id is not None:
                                raise self._translate(gone.error, call) from gone.error
                            call.request_id = str(uuid.uuid4())  # a new statement on the new session
                            running.request_id = call.request_id
                        except sf_errors.ProgrammingError as exc:
                            healthy = True  # the statement failed; the session is fine
                            raise self._translate(exc, call) from exc
                        except sf_errors.Error as exc:
                            raise self._translate(exc, call) from exc
                        finally:
                            self._checkin(pooled, healthy)
                raise AssertionError("unreachable")
            except TimeoutError as exc:
                if call.connecting:
                    raise SourceUnavailable(self.name, f"no session within {timeout:g} s") from exc
                raise SourceTimeout(self.name, timeout) from exc
            finally:
                await inflight.finish(running)

    async def _checkout(self, role: str, share: _Share, call: _Call) -> _Pooled:
        if pooled := self._take_idle(role):
            return pooled
        login_timeout = min(float(self.config["login_timeout"]), max(call.left(), 1.0))
        call.connecting = True
        try:
            conn = await self._thread(share, self._connect, role, login_timeout)
        except sf_errors.Error as exc:
            # Refused sign-in, unknown account, unreachable host: the source is unusable.
            message = (getattr(exc, "msg", None) or str(exc)).strip()
            raise SourceUnavailable(self.name, message.splitlines()[0] if message else type(exc).__name__) from exc
        finally:
            call.connecting = False
        return _Pooled(conn, role, time.monotonic())

    async def _query(
        self,
        pooled: _Pooled,
        call: _Call,
        share: _Share,
        statement: str,
        values: list[Any],
        fetch: Callable[[Any], T],
    ) -> T:
        """Submit, wait without a thread, fetch; abort on the server if the caller goes away."""
        conn = pooled.conn
        params = {
            "requestId": call.request_id,
            # The warehouse ends the statement at the deadline even if this process is gone.
            "STATEMENT_TIMEOUT_IN_SECONDS": max(1, math.ceil(call.left())),
        }

        def submit() -> str:
            cursor = conn.cursor()
            budget = max(1, int(call.left() * SUBMIT_SHARE))
            cursor.execute_async(statement, values or None, timeout=budget, _statement_params=params)
            return str(cursor.sfqid)

        def status(query_id: str) -> Any:
            return conn.get_query_status(query_id)

        def result(query_id: str) -> T:
            cursor = conn.cursor()
            cursor.query_result(query_id)
            return fetch(cursor)

        try:
            call.query_id = await self._thread(share, self._session_checked(submit))
            started = time.monotonic()
            # The server has only just accepted the query: the first look comes after a wait,
            # until this text's shortest recent run would have ended when it ran before.
            learned = self._learned.first_wait(statement) or 0.0
            delay = POLL_FIRST
            while True:
                budget = self._in_flight / POLL_BUDGET
                learning = (elapsed := time.monotonic() - started) < learned
                if learning:  # towards the learned end, in steps, never past the deadline
                    wait = max(min(learned - elapsed, LEARNED_STEP, call.left() / 2), budget, POLL_FIRST)
                else:  # the regular schedule (from POLL_FIRST once a run outlasts the learned end)
                    wait = min(POLL_MAX, max(delay, budget))
                await asyncio.sleep(wait)
                asked = time.monotonic() - started
                self.polls += 1
                state = await self._thread(share, self._session_checked(status), call.query_id)
                if not conn.is_still_running(state):
                    break
                if not learning:
                    delay = max(delay * 2 if delay < 0.04 else 0, (time.monotonic() - started) * POLL_RATIO)
            self._learned.ran(statement, asked)
            return await self._thread(share, self._session_checked(result), call.query_id)
        except asyncio.CancelledError:
            await self._abort(conn, call, statement)
            raise

    def _session_checked(self, fn: Callable[..., T]) -> Callable[..., T]:
        def checked(*args: Any) -> T:
            try:
                return fn(*args)
            except sf_errors.Error as exc:
                if exc.errno in SESSION_GONE:
                    raise _SessionGone(exc) from exc
                raise

        return checked

    async def _abort(self, conn: snowflake.connector.SnowflakeConnection, call: _Call, statement: str) -> None:
        """Stop the query on the server, on the cancel share; the caller waits at most CANCEL_WAIT."""
        query_id, request_id = call.query_id, call.request_id

        def abort() -> None:
            if query_id:
                conn.cursor().abort_query(query_id)
            else:
                # Not submitted yet, or its answer is still on the way: abort by request id,
                # which Snowflake honours for a request that arrives after it.
                conn._cancel_query(statement, uuid.UUID(request_id))  # noqa: SLF001

        task = asyncio.ensure_future(self._thread(self.shares["cancel"], abort))
        _background.add(task)
        task.add_done_callback(_background.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        with suppress(BaseException):
            await asyncio.wait({task}, timeout=CANCEL_WAIT)

    async def cancel(self, running: inflight.Running) -> None:
        """Abort a statement on the server by its request id, from any process."""

        async def abort(pooled: _Pooled, call: _Call, share: _Share) -> None:
            # The connector's own timeout path (SnowflakeCursor.__cancel_query) makes this call.
            request_id = uuid.UUID(running.request_id or "")
            await self._thread(share, pooled.conn._cancel_query, running.sql, request_id)  # noqa: SLF001

        await self._run("cancel", "-- cancel", 10, False, "cancel", abort)

    def _translate(self, exc: sf_errors.Error, call: _Call) -> SourceError:
        message = (getattr(exc, "msg", None) or str(exc)).strip()
        if exc.errno in (CANCELLED, STATEMENT_TIMED_OUT):
            # Cancelled well before the deadline: someone aborted it, not the timer.
            if exc.errno == CANCELLED and call.left() > 0.5:
                return QueryCancelled(self.name)
            return SourceTimeout(self.name, call.timeout)
        if isinstance(exc, sf_errors.ProgrammingError) and exc.errno not in SESSION_GONE:
            return QueryError(self.name, message)
        return SourceUnavailable(self.name, message.splitlines()[0] if message else type(exc).__name__)

    def _check_read_only(self, sql: str) -> None:
        try:
            check_read_only(sql, "snowflake")
        except NotReadOnly as exc:
            raise QueryError(self.name, str(exc)) from None

    # --- the public interface -----------------------------------------------------------

    async def execute(
        self,
        sql: str,
        params: Params | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the Source interface
        max_rows: int | None = None,
        read_only: bool = True,
        file_stream: IO[bytes] | None = None,
        workload: str | None = None,
    ) -> QueryResult:
        """Run one statement. `workload` defaults to "panels" for a read, "pipeline" for a write."""
        timeout = timeout or settings.SOURCE_DEFAULT_TIMEOUT
        max_rows = max_rows or settings.SOURCE_MAX_ROWS
        workload = resolve_workload(workload, read_only)
        if read_only:
            self._check_read_only(sql)
        statement, values = to_qmark(self.name, sql, params)
        keyword = statement_keyword(statement)
        started = time.perf_counter()

        def rows_of(cursor: Any) -> QueryResult:
            columns = [column.name for column in cursor.description or []]
            rows = cursor.fetchmany(max_rows + 1) if cursor.description else []
            return QueryResult(
                source=self.name,
                columns=columns,
                rows=[tuple(row) for row in rows[:max_rows]],
                # DML answers with a one-row summary; its row count is the rows affected.
                row_count=max(cursor.rowcount or 0, 0) if keyword in DML_KEYWORDS else min(len(rows), max_rows),
                elapsed=time.perf_counter() - started,
                query_id=cursor.sfqid or "",
                truncated=len(rows) > max_rows,
            )

        if file_stream is not None:
            # PUT is a file transfer, which the connector runs synchronously only.
            async def transfer(pooled: _Pooled, call: _Call, share: _Share) -> QueryResult:
                def put() -> QueryResult:
                    cursor = pooled.conn.cursor()
                    cursor.execute(
                        statement,
                        values or None,
                        file_stream=file_stream,
                        timeout=max(1, int(call.left() + 0.999)),
                        _statement_params={"requestId": call.request_id},
                    )
                    return rows_of(cursor)

                try:
                    return await self._thread(share, self._session_checked(put))
                except asyncio.CancelledError:
                    await self._abort(pooled.conn, call, statement)
                    raise

            return await self._run("statement", sql, timeout, read_only, workload, transfer)

        async def once(pooled: _Pooled, call: _Call, share: _Share) -> QueryResult:
            return await self._query(pooled, call, share, statement, values, rows_of)

        return await self._run("query" if read_only else "statement", sql, timeout, read_only, workload, once)

    async def stream(
        self,
        sql: str,
        params: Params | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the Source interface
        batch_size: int = 5000,
        workload: str | None = "exports",
    ) -> AsyncGenerator[tuple[list[str], list[tuple[Any, ...]]]]:
        """Yield (columns, rows) batches; the whole export shares one deadline. An empty result
        is one batch without rows, which still names the columns."""
        timeout = timeout or settings.SOURCE_DEFAULT_TIMEOUT
        workload = resolve_workload(workload or "exports", True)
        self._check_read_only(sql)
        statement, values = to_qmark(self.name, sql, params)
        loop = asyncio.get_running_loop()
        batches: asyncio.Queue[tuple[list[str], list[tuple[Any, ...]]] | None] = asyncio.Queue(maxsize=2)
        stop = threading.Event()

        def offer(item: tuple[list[str], list[tuple[Any, ...]]] | None) -> None:
            # Back-pressure: at most two batches wait in memory; give up once the reader left.
            future = asyncio.run_coroutine_threadsafe(batches.put(item), loop)
            while not stop.is_set():
                try:
                    future.result(timeout=0.1)
                    return
                except TimeoutError:
                    continue
            future.cancel()

        def download(cursor: Any) -> None:
            # The download is the only part of the export that holds a thread.
            try:
                columns = [column.name for column in cursor.description or []]
                rows = cursor.fetchmany(batch_size)
                offer((columns, [tuple(row) for row in rows]))  # also when empty: an export's header
                while not stop.is_set() and (rows := cursor.fetchmany(batch_size)):
                    offer((columns, [tuple(row) for row in rows]))
            finally:
                offer(None)

        async def once(pooled: _Pooled, call: _Call, share: _Share) -> None:
            await self._query(pooled, call, share, statement, values, download)

        def release_reader(_: object = None) -> None:
            with suppress(asyncio.QueueFull):
                batches.put_nowait(None)

        task = asyncio.ensure_future(self._run("stream", sql, timeout, True, workload, once))
        # If the call fails before the download starts, nothing else would wake the reader.
        task.add_done_callback(release_reader)
        try:
            while (item := await batches.get()) is not None:
                yield item
            await task
        finally:
            stop.set()
            if not task.done():
                task.cancel()
                with suppress(BaseException):
                    await task

    async def ping(self) -> float:
        return (await self.execute("SELECT 1", timeout=10, workload="health")).elapsed

    async def close(self) -> None:
        def close_all() -> None:
            with self._idle_lock:
                pooled = [p for idle in self._idle.values() for p in idle]
                self._idle.clear()
            for each in pooled:
                with suppress(Exception):
                    each.conn.close(retry=False)

        await asyncio.to_thread(close_all)


# Aborts still on their way when their caller has gone (kept so they are not collected).
_background: set[asyncio.Future[None]] = set()


def sign_in_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The connector's sign-in arguments for the method settings chose (see settings.py)."""
    method = config.get("authenticator") or "password"
    if method == "key_pair":
        return {"authenticator": "SNOWFLAKE_JWT", "private_key": config["private_key"]}
    if method == "oauth":
        return {"authenticator": "oauth", "token": config["token"]}
    if method == "programmatic_access_token":
        return {"authenticator": "PROGRAMMATIC_ACCESS_TOKEN", "token": config["token"]}
    return {"password": config.get("password") or ""}
