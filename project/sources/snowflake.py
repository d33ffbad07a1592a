"""Snowflake through the production connector, on one bounded executor.

The connector is synchronous (its `aio` module is a preview), so every call runs on a
thread of this source's own executor via `sync_to_async(thread_sensitive=False,
executor=...)`. The executor has as many threads as the connection pool has connections:
a slow warehouse makes calls queue here, never exhaust the process's threads.

Deadlines: the connector's own `timeout=` aborts the query on the server when it fires
(it POSTs an abort for the running request), and the awaiting caller is released by an
asyncio deadline at the same moment, so a page never waits on a thread.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import snowflake.connector
import snowflake.connector.errors as sf_errors
from asgiref.sync import sync_to_async
from django.conf import settings

from project.metrics import POOL_IN_USE, POOL_SIZE, POOL_WAITING, track_call
from project.sources import inflight
from project.sources.base import Params, QueryResult, to_qmark
from project.sources.errors import QueryCancelled, QueryError, SourceError, SourceTimeout, SourceUnavailable

T = TypeVar("T")

# Snowflake's "SQL execution canceled" error number.
CANCELLED = 604
# Comments and leading parentheses do not change what a statement does.
_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*\n?|/\*.*?\*/|\()+", re.DOTALL)
READ_ONLY_KEYWORDS = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "LIST", "LS"}
DML_KEYWORDS = {"INSERT", "UPDATE", "DELETE", "MERGE"}


def statement_keyword(sql: str) -> str:
    stripped = _LEADING_NOISE.sub("", sql)
    match = re.match(r"[A-Za-z]+", stripped)
    return match.group(0).upper() if match else ""


@dataclass
class _Call:
    """One call's life, shared by the awaiting coroutine and the worker thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    started: bool = False
    abandoned: bool = False
    connecting: bool = True


class SnowflakeSource:
    kind = "snowflake"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.size = int(config["pool_size"])
        self.executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=f"snowflake-{name}")
        # Idle connections per role: report queries may run under a read-only role.
        self._idle: dict[str, queue.LifoQueue[snowflake.connector.SnowflakeConnection]] = {}
        self._idle_lock = threading.Lock()
        self._in_use = 0
        self.peak_in_use = 0  # the most calls ever running at once; the executor bounds it
        self._counter_lock = threading.Lock()
        POOL_SIZE.labels(name).set(self.size)

    # --- connections (worker threads only) ------------------------------------------------

    def _role(self, read_only: bool) -> str:
        return (self.config.get("report_role") if read_only else "") or self.config.get("role") or ""

    def _connect(self, role: str) -> snowflake.connector.SnowflakeConnection:
        kwargs: dict[str, Any] = {
            "account": self.config["account"],
            "user": self.config["user"],
            "password": self.config["password"],
            "database": self.config["database"],
            "schema": self.config["schema"],
            "login_timeout": self.config["login_timeout"],
            "network_timeout": self.config.get("network_timeout", 60.0),
            "socket_timeout": self.config.get("network_timeout", 60.0),
            # Server-side binding: `?` placeholders travel as bindings, never as SQL text.
            "paramstyle": "qmark",
            "application": "Fanout",
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False, "QUERY_TAG": "fanout"},
        }
        for key in ("warehouse",):
            if self.config.get(key):
                kwargs[key] = self.config[key]
        if role:
            kwargs["role"] = role
        if self.config.get("host"):
            kwargs.update(host=self.config["host"], port=self.config["port"], protocol=self.config["protocol"])
        return snowflake.connector.connect(**kwargs)

    def _checkout(self, role: str) -> snowflake.connector.SnowflakeConnection:
        with self._idle_lock:
            idle = self._idle.setdefault(role, queue.LifoQueue())
        while True:
            try:
                conn = idle.get_nowait()
            except queue.Empty:
                return self._connect(role)
            if not conn.is_closed():
                return conn

    def _checkin(self, role: str, conn: snowflake.connector.SnowflakeConnection, healthy: bool) -> None:
        if healthy and not conn.is_closed():
            self._idle[role].put(conn)
        else:
            try:
                conn.close()
            except Exception:
                pass

    # --- running a call on the executor ---------------------------------------------------

    async def _run(
        self, operation: str, sql: str, timeout: float, read_only: bool, work: Callable[[Any, float, dict[str, Any]], T]
    ) -> T:
        """Run `work(cursor, seconds_left, execute_kwargs)` on a pooled connection, within `timeout`.

        `execute_kwargs` carry the request id Fanout chose for the statement, so staff can
        cancel it from any process (see project.sources.inflight).
        """
        deadline = time.monotonic() + timeout
        call = _Call()
        role = self._role(read_only)
        request_id = str(uuid.uuid4())
        execute_kwargs = {"_statement_params": {"requestId": request_id}}

        def in_thread() -> T:
            with call.lock:
                if call.abandoned:
                    raise SourceTimeout(self.name, timeout)
                call.started = True
            POOL_WAITING.labels(self.name).dec()
            POOL_IN_USE.labels(self.name).inc()
            with self._counter_lock:
                self._in_use += 1
                self.peak_in_use = max(self.peak_in_use, self._in_use)
            healthy = False
            try:
                conn = self._checkout(role)
                call.connecting = False
                left = deadline - time.monotonic()
                if left <= 0:
                    healthy = True
                    raise SourceTimeout(self.name, timeout)
                with conn.cursor() as cursor:
                    result = work(cursor, left, execute_kwargs)
                healthy = True
                return result
            except sf_errors.ProgrammingError as exc:
                healthy = True  # the statement failed, the session is fine
                raise self._translate(exc, timeout, deadline) from exc
            except sf_errors.Error as exc:
                raise self._translate(exc, timeout, deadline) from exc
            finally:
                if not call.connecting:
                    self._checkin(role, conn, healthy)
                with self._counter_lock:
                    self._in_use -= 1
                POOL_IN_USE.labels(self.name).dec()

        running = inflight.start(self.name, self.kind, sql, timeout, request_id=request_id)
        await inflight.publish(running)
        POOL_WAITING.labels(self.name).inc()
        async with track_call(self.name, operation):
            try:
                async with asyncio.timeout(timeout):
                    return await sync_to_async(in_thread, thread_sensitive=False, executor=self.executor)()
            except TimeoutError as exc:
                # The connector's own timer aborts the query on the server at this moment;
                # the caller does not wait for the thread to notice.
                with call.lock:
                    if not call.started:
                        call.abandoned = True
                        POOL_WAITING.labels(self.name).dec()
                if call.started and call.connecting:
                    raise SourceUnavailable(self.name, f"no session within {timeout:g} s") from exc
                raise SourceTimeout(self.name, timeout) from exc
            except asyncio.CancelledError:
                with call.lock:
                    if not call.started:
                        call.abandoned = True
                        POOL_WAITING.labels(self.name).dec()
                raise
            finally:
                await inflight.finish(running)

    async def cancel(self, running: inflight.Running) -> None:
        """Abort a statement on the server by its request id, from any process."""

        def abort(cursor: Any, left: float, execute_kwargs: dict[str, Any]) -> None:
            # The connector's own timeout path (SnowflakeCursor.__cancel_query) makes this call.
            cursor.connection._cancel_query(running.sql, running.request_id)

        await self._run("cancel", "-- cancel", 10, False, abort)

    def _translate(self, exc: sf_errors.Error, timeout: float, deadline: float) -> SourceError:
        message = (getattr(exc, "msg", None) or str(exc)).strip()
        if exc.errno == CANCELLED:
            # Cancelled well before the deadline: someone aborted it, not the timer.
            if deadline - time.monotonic() > 0.5:
                return QueryCancelled(self.name)
            return SourceTimeout(self.name, timeout)
        if isinstance(exc, sf_errors.ProgrammingError):
            return QueryError(self.name, message)
        return SourceUnavailable(self.name, message.splitlines()[0] if message else type(exc).__name__)

    def _check_read_only(self, keyword: str) -> None:
        if keyword not in READ_ONLY_KEYWORDS:
            raise QueryError(self.name, "report queries are read-only: only SELECT, WITH, SHOW and DESCRIBE may run")

    # --- the public interface -----------------------------------------------------------

    async def execute(
        self,
        sql: str,
        params: Params | None = None,
        *,
        timeout: float | None = None,
        max_rows: int | None = None,
        read_only: bool = True,
        file_stream: IO[bytes] | None = None,
    ) -> QueryResult:
        timeout = timeout or settings.SOURCE_DEFAULT_TIMEOUT
        max_rows = max_rows or settings.SOURCE_MAX_ROWS
        statement, values = to_qmark(self.name, sql, params)
        keyword = statement_keyword(statement)
        if read_only:
            self._check_read_only(keyword)

        def work(cursor: Any, left: float, execute_kwargs: dict[str, Any]) -> QueryResult:
            start = time.perf_counter()
            kwargs: dict[str, Any] = {"timeout": max(1, int(left + 0.999)), **execute_kwargs}
            if file_stream is not None:
                kwargs["file_stream"] = file_stream
            cursor.execute(statement, values or None, **kwargs)
            columns = [column.name for column in cursor.description or []]
            rows = cursor.fetchmany(max_rows + 1) if cursor.description else []
            return QueryResult(
                source=self.name,
                columns=columns,
                rows=[tuple(row) for row in rows[:max_rows]],
                # DML answers with a one-row summary; its row count is the rows affected.
                row_count=max(cursor.rowcount or 0, 0) if keyword in DML_KEYWORDS else min(len(rows), max_rows),
                elapsed=time.perf_counter() - start,
                query_id=cursor.sfqid or "",
                truncated=len(rows) > max_rows,
            )

        return await self._run("query" if read_only else "statement", sql, timeout, read_only, work)

    async def stream(
        self, sql: str, params: Params | None = None, *, timeout: float | None = None, batch_size: int = 5000
    ) -> AsyncIterator[tuple[list[str], list[tuple[Any, ...]]]]:
        """Yield (columns, rows) batches; the whole export shares one deadline."""
        timeout = timeout or settings.SOURCE_DEFAULT_TIMEOUT
        statement, values = to_qmark(self.name, sql, params)
        self._check_read_only(statement_keyword(statement))
        batches: queue.Queue[tuple[list[str], list[tuple[Any, ...]]] | None] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def offer(item: tuple[list[str], list[tuple[Any, ...]]] | None) -> None:
            # Back-pressure: at most two batches wait in memory; give up once the reader left.
            while not stop.is_set():
                try:
                    batches.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def work(cursor: Any, left: float, execute_kwargs: dict[str, Any]) -> None:
            try:
                cursor.execute(statement, values or None, timeout=max(1, int(left + 0.999)), **execute_kwargs)
                columns = [column.name for column in cursor.description or []]
                while not stop.is_set() and (rows := cursor.fetchmany(batch_size)):
                    offer((columns, [tuple(row) for row in rows]))
            finally:
                offer(None)

        def release_reader(_: object = None) -> None:
            try:
                batches.put_nowait(None)
            except queue.Full:
                pass  # the reader has batches to read and then the None the worker put

        task = asyncio.ensure_future(self._run("stream", sql, timeout, True, work))
        # If the call fails before `work` starts, nothing else would wake the reader.
        task.add_done_callback(release_reader)
        try:
            while (item := await asyncio.to_thread(batches.get)) is not None:
                yield item
            await task
        finally:
            stop.set()
            release_reader()
            if not task.done():
                task.cancel()

    async def ping(self) -> float:
        return (await self.execute("SELECT 1", timeout=10)).elapsed

    async def close(self) -> None:
        def close_all() -> None:
            for idle in self._idle.values():
                while not idle.empty():
                    try:
                        idle.get_nowait().close()
                    except Exception:
                        pass

        await asyncio.to_thread(close_all)
