"""Postgres report queries through psycopg's AsyncConnectionPool: truly async, no threads.

Every statement runs in its own read-only transaction with `SET LOCAL statement_timeout`
as the server-side backstop, under an asyncio deadline: when the deadline passes, the task
is cancelled inside `cursor.execute`, which makes psycopg cancel the query on the server
(checked in DESIGN.md, "Facts"), and the pool gets a clean connection back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import psycopg.errors
from django.conf import settings
from django.db import connections
from psycopg import sql as pgsql
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from project.metrics import POOL_SIZE, track_call
from project.sources import inflight
from project.sources.base import Params, QueryResult, check_params
from project.sources.errors import QueryCancelled, QueryError, SourceTimeout, SourceUnavailable
from project.sources.workloads import Shares, resolve_workload

# Connections reserved for each workload besides panels, which have pool_max (REPORTS_POOL_MAX).
DEFAULT_CONCURRENCY = {"exports": 2, "pipeline": 2, "health": 1, "cancel": 2}


def conninfo_for(config: dict[str, Any]) -> str:
    """The configured URL, or the app's own database (as the test runner may have renamed it)."""
    if config.get("url"):
        return str(config["url"])
    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params.pop("server_side_binding", None)
    params.pop("pool", None)
    return psycopg.conninfo.make_conninfo(**{key: value for key, value in params.items() if value not in ("", None)})


class PostgresSource:
    kind = "postgres"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        # A psycopg async pool belongs to the event loop that opened it: uvicorn has one loop
        # per process; management commands, sync test clients and async_to_sync have one per
        # call. Each loop's pool is closed by a task of that loop when the loop ends.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
        self._keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )
        # Each workload has its own share of the pool's connections, and the pool holds them
        # all: a workload that uses its whole share never takes another's connection.
        self.limits = Shares(
            name, {"panels": config["pool_max"], **DEFAULT_CONCURRENCY, **(config.get("concurrency") or {})}
        )
        POOL_SIZE.labels(name).set(self.limits.total)

    async def _pool(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        if (pool := self._pools.get(loop)) is not None:
            return pool
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:
            if (pool := self._pools.get(loop)) is None:
                pool = AsyncConnectionPool(
                    conninfo_for(self.config),
                    min_size=self.config["pool_min"],
                    max_size=self.limits.total,
                    timeout=self.config["pool_timeout"],
                    kwargs={"autocommit": False, "connect_timeout": max(1, int(self.config["connect_timeout"]))},
                    open=False,
                    name=f"fanout-{self.name}",
                )
                try:
                    # Opening waits for the first connection, so a source that is down is
                    # reported as such within connect_timeout instead of at the deadline.
                    await pool.open(wait=True, timeout=self.config["connect_timeout"])
                except PoolTimeout as exc:
                    await pool.close()
                    raise SourceUnavailable(
                        self.name, f"cannot connect within {self.config['connect_timeout']:g} s"
                    ) from exc
                self._pools[loop] = pool
                self._keepers[loop] = loop.create_task(self._close_with_loop(loop, pool), name=f"{pool.name}-keeper")
        return pool

    async def _close_with_loop(self, loop: asyncio.AbstractEventLoop, pool: AsyncConnectionPool) -> None:
        """Wait until this loop ends (asyncio.run cancels every task), then close its pool.

        Without this, nothing closed the pool of a one-shot loop (a management command, a
        sync test client request, any async_to_sync call), and psycopg-pool's workers catch
        CancelledError around each maintenance task (`CLIENT_EXCEPTIONS` in pool_async.py;
        psycopg/psycopg#1345 is the same family): a worker cancelled while it opened a
        connection logged "error connecting in 'fanout-postgres'" and went back to waiting
        on its queue, so `asyncio.Runner.close()` waited for it forever. Every finished loop
        also kept its pool's connections (the pool refers to its loop, so the weak maps
        never let go) until Postgres refused new clients.
        """
        try:
            await loop.create_future()  # resolved by nobody: only the loop's end or close() ends it
        finally:
            if self._pools.get(loop) is pool:
                del self._pools[loop]
            self._locks.pop(loop, None)
            self._keepers.pop(loop, None)
            await _close_cancelled(pool)

    def pool_stats(self) -> dict[str, int]:
        stats: dict[str, int] = {}
        for pool in self._pools.values():
            for key, value in pool.get_stats().items():
                stats[key] = stats.get(key, 0) + value
        return stats

    async def execute(
        self,
        sql: str,
        params: Params | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the Source interface
        max_rows: int | None = None,
        read_only: bool = True,
        workload: str | None = None,
    ) -> QueryResult:
        """Run one statement. `workload` defaults to "panels" for a read, "pipeline" for a write."""
        share = resolve_workload(workload, read_only)
        timeout = timeout or settings.SOURCE_DEFAULT_TIMEOUT
        max_rows = max_rows or settings.SOURCE_MAX_ROWS
        bound = check_params(self.name, sql, params)
        async with track_call(self.name, "query"):
            start = time.perf_counter()
            async with self._connection(sql, timeout, share) as conn, conn.cursor() as cur:
                # In a pipeline every statement goes out on the extended protocol, which runs
                # one statement: the simple protocol would run "SELECT 1; COMMIT; UPDATE ..."
                # whole (DESIGN.md, "Facts added 2026-12"); stream() is extended already (a
                # server-side cursor's DECLARE). prepare=True says so again outside one.
                # BEGIN, the SETs, the statement and its ROLLBACK go out together, and leaving
                # the block is the one sync: one round trip with the connection held, not
                # five, each of which waits its turn on a busy event loop (under load that
                # wait, not the query, is what holds a connection). The rows are the
                # statement's own result, read back in that round trip.
                async with conn.pipeline():
                    await _begin(conn, read_only, timeout)
                    await cur.execute(sql, bound, prepare=True)
                    await conn.execute("ROLLBACK")  # report work is never committed
                columns = [column.name for column in cur.description or []]
                rows = await cur.fetchmany(max_rows + 1) if cur.description else []
                row_count = min(len(rows), max_rows) if cur.description else cur.rowcount
                query_id = str(conn.info.backend_pid)
            truncated = len(rows) > max_rows
            return QueryResult(
                source=self.name,
                columns=columns,
                rows=[tuple(row) for row in rows[:max_rows]],
                row_count=row_count,
                elapsed=time.perf_counter() - start,
                query_id=query_id,
                truncated=truncated,
            )

    async def stream(
        self,
        sql: str,
        params: Params | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the Source interface
        batch_size: int = 5000,
        workload: str | None = "exports",
    ) -> AsyncGenerator[tuple[list[str], list[tuple[Any, ...]]]]:
        """Yield (columns, rows) batches from a server-side cursor, so memory stays flat; an
        empty result is one batch without rows, which still names the columns."""
        share = resolve_workload(workload or "exports", True)
        timeout = timeout or settings.SOURCE_DEFAULT_TIMEOUT
        bound = check_params(self.name, sql, params)
        async with (
            track_call(self.name, "stream"),
            self._connection(sql, timeout, share) as conn,
            conn.cursor(name="fanout_stream") as cur,
        ):
            await _begin(conn, True, timeout)
            await cur.execute(sql, bound)
            columns = [column.name for column in cur.description or []]
            batch = await cur.fetchmany(batch_size)
            yield columns, [tuple(row) for row in batch]  # also when empty: an export's header
            while batch := await cur.fetchmany(batch_size):
                yield columns, [tuple(row) for row in batch]

    @asynccontextmanager
    async def _connection(
        self,
        sql: str,
        timeout: float,  # noqa: ASYNC109 - the deadline of the whole call, enforced inside
        workload: str,
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection whose transaction is always rolled back, under one deadline.

        The pool's connections are not in autocommit: the caller's first statement opens the
        transaction (psycopg sends BEGIN before it; `_begin` makes it read-only and gives it
        the deadline). It is rolled back whatever happened: by a ROLLBACK the caller queues
        behind its statement (execute), else as the connection is given back. Plain
        statements, not psycopg's `transaction()` block, which in pipeline mode nests two
        pipelines and syncs on entering and leaving each: 1.34 ms of this process's CPU per
        `SELECT 1` with the block, under 0.9 ms without, measured one after another on a
        2-core machine.
        Whatever goes wrong leaves as one of the typed errors of `project.sources.errors`.
        """
        try:
            async with asyncio.timeout(timeout), self.limits.slot(workload):
                pool = await self._pool()
                conn = await pool.getconn(timeout=self.config["pool_timeout"])
                try:
                    running = inflight.start(self.name, self.kind, sql, timeout, backend_pid=conn.info.backend_pid)
                    await inflight.publish(running)
                    try:
                        yield conn
                    finally:
                        await inflight.finish(running)
                finally:
                    await _give_back(pool, conn)  # rolls back what is still open: never committed
        except TimeoutError as exc:
            raise SourceTimeout(self.name, timeout) from exc
        except psycopg.errors.QueryCanceled as exc:
            if "statement timeout" in str(exc):
                raise SourceTimeout(self.name, timeout) from exc
            raise QueryCancelled(self.name) from exc
        except PoolTimeout as exc:
            raise SourceUnavailable(
                self.name, f"all connections busy or failing for {self.config['pool_timeout']:g} s"
            ) from exc
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(self.name, _first_line(exc) or "connection failed") from exc
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise QueryError(self.name, "report queries are read-only: " + _diag(exc)) from exc
        except psycopg.Error as exc:
            raise QueryError(self.name, _diag(exc)) from exc

    async def cancel(self, running: inflight.Running) -> None:
        """Cancel a statement on the server by its backend pid, from any process."""
        await self.execute(
            "SELECT pg_cancel_backend(%(pid)s)", {"pid": running.backend_pid}, timeout=10, workload="cancel"
        )

    async def ping(self) -> float:
        result = await self.execute("SELECT 1", timeout=5, workload="health")
        return result.elapsed

    async def close(self) -> None:
        """Close this event loop's pool now (a pool of another loop closes when its loop ends)."""
        if (keeper := self._keepers.get(asyncio.get_running_loop())) is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)


async def _close_cancelled(pool: AsyncConnectionPool) -> None:
    """Close a pool whose workers may have been cancelled with their loop.

    `close()` tells the workers to stop (which ends even one that swallowed its
    cancellation), then waits for them, and only then closes the idle connections: when
    the loop's end has cancelled the workers, that wait raises CancelledError and the idle
    connections would be dropped unclosed. So take them out first and close them here.
    """
    idle = []
    with contextlib.suppress(PoolTimeout):
        while pool.get_stats().get("pool_available"):
            idle.append(await pool.getconn(timeout=1.0))
    # CancelledError here comes from waiting for the cancelled workers, told to stop anyway.
    with contextlib.suppress(asyncio.CancelledError):
        await pool.close()
    for conn in idle:
        await conn.close()


async def _begin(conn: psycopg.AsyncConnection[Any], read_only: bool, timeout: float) -> None:  # noqa: ASYNC109
    """The transaction's settings: read-only for report work, and the server-side deadline."""
    if read_only:
        await conn.execute("SET TRANSACTION READ ONLY")
    await conn.execute(pgsql.SQL("SET LOCAL statement_timeout = {}").format(pgsql.Literal(int(timeout * 1000))))


async def _give_back(pool: AsyncConnectionPool, conn: psycopg.AsyncConnection[Any]) -> None:
    """Return a connection to the pool with its transaction rolled back (the pool closes a
    connection still busy with a query, such as one cancelled in flight). Always returned:
    a cancellation that lands during the ROLLBACK (a deadline, a browser gone) must not take
    the connection out of the pool for good."""
    try:
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
    finally:
        await pool.putconn(conn)


def _diag(exc: psycopg.Error) -> str:
    return (exc.diag.message_primary or _first_line(exc)).strip()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
