"""Queries in flight: who runs what on which source right now, and a way to cancel one.

Each source call registers itself for its lifetime: in this process (to cancel it here)
and in the shared cache under `inflight:<id>` with a TTL just past its deadline, so staff
see the calls of every web process and worker. Cancelling works from any process because
it goes through the database, not the process that runs the call: Postgres by
`pg_cancel_backend(<backend pid>)`, Snowflake by the same abort request the connector
sends at a timeout, for the request id Fanout chose for the call.

Who and what: callers label their work with `labelled(...)` (a context variable, so it
follows tasks and `sync_to_async` threads): the report runner with the report and panel,
the pipeline with its run and step.
"""

from __future__ import annotations

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

logger = logging.getLogger(__name__)

_label: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("fanout_query_label", default=("", ""))
PREFIX = "inflight:"


@contextmanager
def labelled(what: str, who: str = "") -> Iterator[None]:
    """Name the work (and the user) behind the source calls made inside this block."""
    token = _label.set((what, who))
    try:
        yield
    finally:
        _label.reset(token)


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
    try:
        await cache.aset(PREFIX + running.id, asdict(running), int(running.deadline - time.time()) + 5)
    except Exception:  # listing is best effort; the query itself must not suffer
        logger.warning("could not publish in-flight query %s", running.id, exc_info=True)


async def finish(running: Running) -> None:
    LOCAL.pop(running.id, None)
    try:
        await cache.adelete(PREFIX + running.id)
    except Exception:
        logger.warning("could not retire in-flight query %s", running.id, exc_info=True)


def _shared_keys() -> list[str] | None:
    """Every published key, or None when the cache cannot list keys (LocMem is per process anyway)."""
    if hasattr(cache, "iter_keys"):
        return [key for key in cache.iter_keys(PREFIX + "*")]
    return None


def running_now() -> list[Running]:
    """The calls running now, in every process that shares the cache, oldest first."""
    found = dict(LOCAL)
    keys = _shared_keys()
    if keys:
        for key, value in cache.get_many(keys).items():
            found.setdefault(key.removeprefix(PREFIX), Running(**value))
    return sorted(found.values(), key=lambda running: running.started_at)


def find(running_id: str) -> Running | None:
    if running_id in LOCAL:
        return LOCAL[running_id]
    value = cache.get(PREFIX + running_id)
    return Running(**value) if value else None


async def cancel(running_id: str) -> Running | None:
    """Cancel a call on its database, whichever process runs it; None when it already ended."""
    from asgiref.sync import sync_to_async

    from project.sources import get_source

    if (running := await sync_to_async(find)(running_id)) is None:
        return None
    await get_source(running.source).cancel(running)
    return running
