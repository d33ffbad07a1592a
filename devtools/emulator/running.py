"""The registry of running queries, which the abort request and SYSTEM$CANCEL_QUERY act on."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import duckdb
import snowflake.connector.errors
from fakesnow.fakes import FakeSnowflakeConnection
from starlette.concurrency import run_in_threadpool

# Snowflake's answer to a cancelled statement; the connector rewrites the message to
# "SQL execution was cancelled by the client due to a timeout" when its own timer fired.
CANCELLED_CODE = "000604"
CANCELLED_MESSAGE = "SQL execution canceled"
CANCELLED_SQLSTATE = "57014"

# An interrupt that lands between two DuckDB statements is lost, so a cancelled query's
# connection is interrupted again at this interval until its worker thread gives up.
_INTERRUPT_INTERVAL = 0.05


# Snowflake's answer when STATEMENT_TIMEOUT_IN_SECONDS ends a statement
# (https://docs.snowflake.com/en/sql-reference/parameters#statement-timeout-in-seconds).
TIMED_OUT_CODE = "000630"


class QueryCancelled(snowflake.connector.errors.ProgrammingError):
    def __init__(self) -> None:
        super().__init__(msg=CANCELLED_MESSAGE, errno=int(CANCELLED_CODE), sqlstate=CANCELLED_SQLSTATE)


class StatementTimedOut(QueryCancelled):
    def __init__(self, seconds: float) -> None:
        snowflake.connector.errors.ProgrammingError.__init__(
            self,
            msg=f"Statement reached its statement or warehouse timeout of {seconds:g} second(s) and was canceled.",
            errno=int(TIMED_OUT_CODE),
            sqlstate=CANCELLED_SQLSTATE,
        )


@dataclass(eq=False)
class RunningQuery:
    request_id: str
    sql_text: str
    conn: FakeSnowflakeConnection
    loop: asyncio.AbstractEventLoop
    started_at: float = field(default_factory=time.time)
    # Snowflake's id for the query, known from the start (an asynchronous query answers with it)
    query_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # true while the query sleeps in SYSTEM$WAIT, which costs no thread
    waiting: bool = False
    # set when the statement's own STATEMENT_TIMEOUT_IN_SECONDS ended it
    timed_out_after: float | None = None
    _cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Cancel from the event loop's thread (see cancel_query for any thread)."""
        self._cancelled.set()
        self.interrupt()

    def time_out_after(self, seconds: float) -> asyncio.TimerHandle:
        """Cancel the query when its statement timeout passes, as Snowflake does."""

        def fire() -> None:
            if not self.cancelled:
                self.timed_out_after = seconds
                self.cancel()

        return self.loop.call_later(seconds, fire)

    def cancel_error(self) -> QueryCancelled:
        return QueryCancelled() if self.timed_out_after is None else StatementTimedOut(self.timed_out_after)

    def interrupt(self) -> None:
        # every statement of a session runs on the session's DuckDB connection
        # a closed session raises: nothing runs on it then
        with contextlib.suppress(duckdb.Error):
            self.conn._duck_conn.interrupt()  # noqa: SLF001

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise self.cancel_error()

    async def wait(self, seconds: float) -> None:
        """Sleep on the event loop, or raise QueryCancelled as soon as the query is cancelled."""
        self.raise_if_cancelled()
        self.waiting = True
        try:
            await asyncio.wait_for(self._cancelled.wait(), timeout=max(seconds, 0))
        except TimeoutError:
            return
        finally:
            self.waiting = False
        raise self.cancel_error()

    async def run_in_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking DuckDB work in the thread pool, interrupting it if the query is cancelled."""
        self.raise_if_cancelled()
        try:
            return await self.interruptible(run_in_threadpool(fn, *args, **kwargs))
        except duckdb.InterruptException:
            if self.cancelled:
                raise self.cancel_error() from None
            raise

    async def interruptible(self, work_coro: Coroutine[Any, Any, Any]) -> Any:
        """Await work; once the query is cancelled keep interrupting DuckDB until the work ends.

        The work itself is never abandoned: its thread still holds the session's connection,
        and the next query of the session must not start before it lets go.
        """
        # A session's DuckDB connection runs one statement at a time, while Snowflake lets a
        # session run several asynchronous queries at once: they take turns here.
        lock = _session_locks.setdefault(self.conn, asyncio.Lock())
        try:
            await lock.acquire()
        except BaseException:
            work_coro.close()
            raise
        try:
            work: asyncio.Future[Any] = asyncio.ensure_future(work_coro)
            stop = asyncio.ensure_future(self._cancelled.wait())
            try:
                await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
                while not work.done():
                    self.interrupt()
                    await asyncio.wait({work}, timeout=_INTERRUPT_INTERVAL)
            finally:
                stop.cancel()
            return work.result()
        finally:
            lock.release()


@dataclass(frozen=True)
class RunningQueryInfo:
    request_id: str
    query_id: str
    sql_text: str
    started_at: float
    waiting: bool
    cancelled: bool


# One lock per fakesnow session (weakly held: a closed session's lock goes with it).
_session_locks: weakref.WeakKeyDictionary[FakeSnowflakeConnection, asyncio.Lock] = weakref.WeakKeyDictionary()

# requestId -> query. Process-wide like fakesnow's sessions; touched only on the event loop.
_running: dict[str, RunningQuery] = {}

# Aborts that arrived before their query, by requestId: the connector's timer can fire before a
# delayed query-request reaches a busy emulator. Kept a minute, then forgotten.
_early_aborts: dict[str, float] = {}
_EARLY_ABORT_TTL = 60.0


def register(query: RunningQuery) -> None:
    _running[query.request_id] = query
    if _early_aborts.pop(query.request_id, None) is not None:
        query.cancel()


def abort(request_id: str) -> None:
    """Cancel the query with this requestId, now or when it arrives."""
    if query := _running.get(request_id):
        query.cancel()
        return
    now = time.monotonic()
    for stale in [r for r, at in _early_aborts.items() if now - at > _EARLY_ABORT_TTL]:
        del _early_aborts[stale]
    _early_aborts[request_id] = now


def unregister(query: RunningQuery) -> None:
    if _running.get(query.request_id) is query:
        del _running[query.request_id]


def find(request_id: str) -> RunningQuery | None:
    """The running query with this requestId or query id."""
    if query := _running.get(request_id):
        return query
    return next((q for q in list(_running.values()) if q.query_id == request_id), None)


def running_queries() -> list[RunningQueryInfo]:
    """A snapshot of the queries the emulator is running, safe to call from any thread."""
    return [
        RunningQueryInfo(q.request_id, q.query_id, q.sql_text, q.started_at, q.waiting, q.cancelled)
        for q in list(_running.values())
    ]


def cancel_query(request_id: str) -> bool:
    """Cancel a running query by its requestId or query id, from any thread. False if it is not running."""
    query = find(request_id)
    if query is None:
        return False
    query.loop.call_soon_threadsafe(query.cancel)
    return True


def cancel_all() -> None:
    """Cancel every running query (on shutdown), from the event loop's thread."""
    for query in list(_running.values()):
        query.cancel()
