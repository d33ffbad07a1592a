"""Queries in flight: who runs what on which source right now, and a way to cancel one.

Each source call registers itself for its lifetime in this process; while any run, the
process shares the list every half second in the cache (`inflight:process:<pid>`, with a
short TTL), so staff see the calls of every web process and worker. Cancelling works from any process because
it goes through the database, not the process that runs the call: Postgres by
`pg_cancel_backend(<backend pid>)`, Snowflake by the same abort request the connector
sends at a timeout, for the request id Fanout chose for the call.

Who and what: callers label their work with `labelled(...)` (a context variable, so it
follows tasks and `sync_to_async` threads): the report runner with the report and panel,
the pipeline with its run and step.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from django.core.cache import cache

from project.cache import backend

logger = logging.getLogger(__name__)

_label: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("fanout_query_label", default=("", ""))
PREFIX = "inflight:"
# How often each process shares its list of running calls through the cache.
PUBLISH_EVERY = 0.5


@contextmanager
def labelled(what: str, who: str = "") -> Iterator[None]:
    """Name the work (and the user) behind the source calls made inside this block."""
    token = _label.set((what, who))
    try:
        yield
    finally:
        _label.reset(token)


def current() -> tuple[str, str]:
    """The (what, who) label of the work in progress."""
    return _label.get()


@dataclass
class Running:
    id: str
    source: str
    kind: str
    sql: str
    what: str
    who: str
    started_at: float
    deadline: float
    process: int
    backend_pid: int | None = None  # Postgres
    request_id: str | None = None  # Snowflake

    @property
    def elapsed(self) -> float:
        return max(0.0, time.time() - self.started_at)


LOCAL: dict[str, Running] = {}


def start(source: str, kind: str, sql: str, timeout: float, **ids: Any) -> Running:
    what, who = _label.get()
    running = Running(
        id=uuid.uuid4().hex,
        source=source,
        kind=kind,
        sql=sql,
        what=what,
        who=who,
        started_at=time.time(),
        deadline=time.time() + timeout,
        process=os.getpid(),
        **ids,
    )
    LOCAL[running.id] = running
    return running


async def publish(running: Running) -> None:
    """Make sure this process's publisher runs; it shares LOCAL with the other processes."""
    global _publisher
    if _publisher is None or _publisher.done() or _publisher.get_loop() is not asyncio.get_running_loop():
        _publisher = asyncio.get_running_loop().create_task(_publish_while_running())


async def finish(running: Running) -> None:
    LOCAL.pop(running.id, None)


_publisher: asyncio.Task[None] | None = None


async def _publish_while_running() -> None:
    """Every PUBLISH_EVERY seconds, write this process's calls as one cache entry.

    One write per process per interval instead of two round trips per call keeps the
    registry off every query's path; a call shorter than the interval may not be seen
    by other processes, which is fine for a list of what is running now.
    """
    key = f"{PREFIX}process:{os.getpid()}"
    while True:
        await asyncio.sleep(PUBLISH_EVERY)
        snapshot = [asdict(running) for running in list(LOCAL.values())]
        try:
            if snapshot:
                await backend.acall("set", key, snapshot, int(PUBLISH_EVERY * 3) + 1)
            else:
                await backend.acall("delete", key)
        except backend.CacheUnavailable:  # listing is best effort; the queries must not suffer
            logger.warning("could not publish the queries in flight: the cache is unavailable")
        if not snapshot:
            return


def _shared_keys() -> list[str] | None:
    """Every published key, or None when the cache cannot list keys (LocMem is per process anyway)."""
    if hasattr(cache, "iter_keys"):
        return list(backend.call("iter_keys", PREFIX + "*"))
    return None


def running_now() -> list[Running]:
    """The calls running now, in every process that shares the cache, oldest first."""
    found = dict(LOCAL)
    try:
        keys = _shared_keys()
        shared = backend.call("get_many", keys).values() if keys else []
    except backend.CacheUnavailable:
        shared = []  # other processes' calls are not visible while the cache is down
    for snapshot in shared:
        for value in snapshot:
            # This process's own list is LOCAL; its published copy may be half a second old.
            if value["process"] != os.getpid():
                found.setdefault(value["id"], Running(**value))
    return sorted(found.values(), key=lambda running: running.started_at)


def find(running_id: str) -> Running | None:
    return next((running for running in running_now() if running.id == running_id), None)


async def cancel(running_id: str) -> Running | None:
    """Cancel a call on its database, whichever process runs it; None when it already ended."""
    from asgiref.sync import sync_to_async

    from project.sources import get_source

    if (running := await sync_to_async(find)(running_id)) is None:
        return None
    await get_source(running.source).cancel(running)
    return running
