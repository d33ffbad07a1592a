"""Workloads: each kind of work has its own bounded share of a source, so none starves another.

Panels, exports, pipeline calls, health checks and cancels each get a limit on the calls they
may have in flight on a source (settings: SNOWFLAKE_CONCURRENCY_<WORKLOAD>,
REPORTS_CONCURRENCY_<WORKLOAD>). Two slow exports then wait for their own share and never
take the connection or thread a panel or the Cancel button needs. Shares are visible in
/metrics (fanout_source_workload_limit, _in_flight, _waiting).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from project.metrics import POOL_IN_USE, POOL_WAITING, WORKLOAD_IN_FLIGHT, WORKLOAD_LIMIT, WORKLOAD_WAITING

Workload = Literal["panels", "exports", "pipeline", "health", "cancel"]
WORKLOADS: tuple[Workload, ...] = ("panels", "exports", "pipeline", "health", "cancel")


def resolve_workload(workload: str | None, read_only: bool) -> Workload:
    """None means "panels" for a read and "pipeline" for a write; anything else must be known."""
    if workload is None:
        return "panels" if read_only else "pipeline"
    for known in WORKLOADS:
        if workload == known:
            return known
    raise ValueError(f"unknown workload {workload!r}: one of {', '.join(WORKLOADS)}")


class Limiter:
    """A semaphore usable from any event loop and thread: a source is process-wide, while the
    sync test client and management commands each run their own loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.active < self.limit and not self._waiters:
                self.active += 1
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                loop = waiter.get_loop()
                if waiter.done() or loop.is_closed():
                    continue
                loop.call_soon_threadsafe(self._hand_over, waiter)
                return
            self.active -= 1

    def _hand_over(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled():
            self.release()
        elif not waiter.done():
            waiter.set_result(None)


class Shares:
    """One source's workload limiters, with their metrics."""

    def __init__(self, source: str, limits: dict[str, int]) -> None:
        self.source = source
        self.limiters: dict[str, Limiter] = {workload: Limiter(int(limits[workload])) for workload in WORKLOADS}
        for workload, limiter in self.limiters.items():
            WORKLOAD_LIMIT.labels(source, workload).set(limiter.limit)
            # Shown from the start, at zero, so a dashboard has every workload's series.
            WORKLOAD_IN_FLIGHT.labels(source, workload)
            WORKLOAD_WAITING.labels(source, workload)

    @property
    def total(self) -> int:
        return sum(limiter.limit for limiter in self.limiters.values())

    @asynccontextmanager
    async def slot(self, workload: str) -> AsyncIterator[None]:
        """Wait for a place in the workload's share, and hold it for the block."""
        limiter = self.limiters[workload]
        POOL_WAITING.labels(self.source).inc()
        WORKLOAD_WAITING.labels(self.source, workload).inc()
        try:
            await limiter.acquire()
        finally:
            POOL_WAITING.labels(self.source).dec()
            WORKLOAD_WAITING.labels(self.source, workload).dec()
        POOL_IN_USE.labels(self.source).inc()
        WORKLOAD_IN_FLIGHT.labels(self.source, workload).inc()
        try:
            yield
        finally:
            POOL_IN_USE.labels(self.source).dec()
            WORKLOAD_IN_FLIGHT.labels(self.source, workload).dec()
            limiter.release()
