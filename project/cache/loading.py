"""Cache-aside loading: one load per miss, stale-while-revalidate, invalidation by generation.

Each entry stores the namespace generation it was loaded under; one `get_many` reads the
entry and the current generation together, so invalidating (bumping the generation)
reaches every web process on its next read, and a read costs one round trip. Concurrent
misses for one key load once: inside a process they share one future (per generation,
so a read that starts after an invalidation never joins a load from before it), across
processes one wins a short `add` lock and the others wait for its result (falling back
to loading themselves if it never comes). A cache that is down counts as a miss: the
page still loads, only without the cache (see `backend` for the time that costs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from project.cache import backend, counters
from project.cache.backend import CacheUnavailable
from project.cache.keys import check, generation_key, make_key

logger = logging.getLogger(__name__)

# How long one process may hold the load lock of a key before others load themselves.
LOCK_SECONDS = 30
# How often a process that lost the lock checks for the winner's result.
WAIT_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class Entry[T]:
    value: T
    stored_at: float  # unix time the value was loaded
    hit: bool
    stale: bool = False

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.stored_at)


@dataclass(frozen=True, slots=True)
class Load[T]:
    """One cache-aside read: what to load, under which generation, and how long to keep it."""

    namespace: str
    key: str  # the full cache key (make_key)
    generation: int
    loader: Callable[[], Awaitable[T]]
    ttl: int
    swr: int  # seconds past the TTL a stale value may be served while it refreshes
    fresh: bool = False

    @property
    def flight(self) -> str:
        """The in-process single-flight key: loads of different generations never merge."""
        return f"{self.key}@{self.generation}"

    @property
    def kept(self) -> bool:
        """Whether the value is stored on the cache server at all (not with a TTL of 0)."""
        return self.ttl + self.swr > 0

    @property
    def lock_key(self) -> str:
        return f"lock:{self.flight}"


_inflight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary()
)
_background: set[asyncio.Task[Any]] = set()


async def load[T](
    namespace: str,
    key: Any,
    loader: Callable[[], Awaitable[T]],
    *,
    ttl: int | None = None,
    fresh: bool = False,
    stale_while_revalidate: int = 0,
) -> Entry[T]:
    """The cached value for `key`, or the loader's, stored for `ttl` seconds.

    `fresh=True` skips the read and reloads (still once for concurrent callers).
    With `stale_while_revalidate=N`, a value up to N seconds past its TTL is returned at
    once (`stale=True`) while one background load refreshes it.
    """
    full_key = make_key(namespace, key)
    ttl = settings.CACHE_TTLS[namespace] if ttl is None else ttl
    if ttl + stale_while_revalidate <= 0:
        # Kept for no time (a panel with TTL 0): nothing to read, lock or write on the cache
        # server (a lock would only make other processes wait for a value never stored);
        # concurrent callers in this process still share one load.
        counters.count(namespace, "misses")
        return await _single_flight(Load(namespace, full_key, 0, loader, 0, 0, fresh))
    generation, cached = await _read(namespace, full_key)
    job = Load(
        namespace=namespace,
        key=full_key,
        generation=generation,
        loader=loader,
        ttl=ttl,
        swr=stale_while_revalidate,
        fresh=fresh,
    )
    if not fresh and cached is not None and cached.get("g") == generation:
        age = time.time() - cached["t"]
        if age <= job.ttl + job.swr:
            counters.count(namespace, "hits")
            stale = age > job.ttl
            if stale:
                _refresh_in_background(replace(job, fresh=True))
            return Entry(cached["v"], cached["t"], hit=True, stale=stale)
    counters.count(namespace, "misses")
    return await _single_flight(job)


async def _read(namespace: str, full_key: str) -> tuple[int, dict[str, Any] | None]:
    try:
        found = await backend.acall("get_many", [generation_key(namespace), full_key])
    except CacheUnavailable:  # the cache being down must not take the page down
        return 0, None
    return int(found.get(generation_key(namespace)) or 0), found.get(full_key)


class _LoaderCancelled(Exception):
    """The request that was loading a key went away; those waiting on it load it themselves."""


async def _single_flight[T](job: Load[T]) -> Entry[T]:
    inflight = _inflight.setdefault(asyncio.get_running_loop(), {})
    while (future := inflight.get(job.flight)) is not None:
        # Someone in this process is loading it already: share their result, unless the
        # one loading was cancelled (its browser went away): then load it ourselves.
        try:
            value, stored_at = await asyncio.shield(future)
        except _LoaderCancelled:
            continue
        return Entry(value, stored_at, hit=True)
    future = asyncio.get_running_loop().create_future()
    inflight[job.flight] = future
    try:
        value, stored_at, hit = await _load_across_processes(job)
        future.set_result((value, stored_at))
        return Entry(value, stored_at, hit=hit)
    except asyncio.CancelledError:
        future.set_exception(_LoaderCancelled())
        future.exception()  # mark retrieved: waiters, if any, get it through shield
        raise
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()
        raise
    finally:
        inflight.pop(job.flight, None)


async def _load_across_processes[T](job: Load[T]) -> tuple[T, float, bool]:
    if not job.kept:
        value, stored_at = await _load_and_store(job)
        return value, stored_at, False
    try:
        won = await backend.acall("add", job.lock_key, 1, LOCK_SECONDS)
    except CacheUnavailable:
        won = True  # no cache, no lock: load
    if not won and (shared := await _wait_for_winner(job)) is not None:
        return shared
    try:
        value, stored_at = await _load_and_store(job)
        return value, stored_at, False
    finally:
        with contextlib.suppress(CacheUnavailable):
            await backend.acall("delete", job.lock_key)


async def _wait_for_winner[T](job: Load[T]) -> tuple[T, float, bool] | None:
    """The value another process is loading, once stored; None if it gives up or fails."""
    deadline = time.monotonic() + LOCK_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(WAIT_INTERVAL)
        if (shared := await _winners_value(job)) is not None:
            return shared
        try:
            if await backend.acall("get", job.lock_key) is None:
                # The winner stores its value, then releases the lock: it may have done both
                # since the read above. Only if the value is still not there did it fail.
                return await _winners_value(job)
        except CacheUnavailable:
            return None
    return None


async def _winners_value[T](job: Load[T]) -> tuple[T, float, bool] | None:
    current, cached = await _read(job.namespace, job.key)
    if cached is not None and cached.get("g") == current and (not job.fresh or cached["t"] > time.time() - 1):
        return cached["v"], cached["t"], True
    return None


async def _load_and_store[T](job: Load[T]) -> tuple[T, float]:
    stats = counters.STATS[job.namespace]
    started = time.perf_counter()
    value = await job.loader()
    stored_at = time.time()
    counters.count(job.namespace, "loads")
    stats.last_load_at = stored_at
    stats.last_load_seconds = time.perf_counter() - started
    if not job.kept:
        return value, stored_at
    stats.keys.add(job.key)
    try:
        await backend.acall(
            "set_many",
            {
                job.key: {"v": value, "t": stored_at, "g": job.generation},
                f"meta:{job.namespace}": {"last_load_at": stored_at, "last_load_seconds": stats.last_load_seconds},
            },
            job.ttl + job.swr,
        )
    except CacheUnavailable:
        logger.warning("cache write skipped for %s: the cache is unavailable", job.key)
    return value, stored_at


def _refresh_in_background(job: Load[Any]) -> None:
    """One background reload of a stale value; it ends with its event loop (cancelled there)."""
    if job.flight in _inflight.setdefault(asyncio.get_running_loop(), {}):
        return

    async def refresh() -> None:
        try:
            await _single_flight(job)
        except Exception:
            logger.warning("background refresh of %s failed", job.key, exc_info=True)

    task = asyncio.ensure_future(refresh())
    _background.add(task)
    task.add_done_callback(_background.discard)


# --- Invalidation ---------------------------------------------------------------------------


def invalidate(namespace: str) -> int:
    """Bump the namespace's generation: every process misses on its next read. Returns it.

    Raises `CacheUnavailable` when the cache cannot be reached (or its breaker is open):
    then nothing was invalidated, and other processes may serve the old values until their
    TTL. A save that calls this should still succeed, and tell the person who saved that
    the change shows everywhere only after the TTL (`namespaces()[namespace]` seconds).
    """
    from project import localcache

    check(namespace)
    key = generation_key(namespace)
    counters.STATS[namespace].keys.clear()
    backend.call("add", key, 0, None)
    try:
        generation = backend.call("incr", key)
    except ValueError:  # evicted between add and incr
        backend.call("set", key, 1, None)
        generation = 1
    finally:
        localcache.invalidated(namespace)  # this request reads its own invalidation
    return int(generation)


async def ainvalidate(namespace: str) -> int:
    """`invalidate` from async code; raises `CacheUnavailable` the same way."""
    return int(await sync_to_async(invalidate, thread_sensitive=False)(namespace))


def generation(namespace: str) -> int:
    check(namespace)
    return int(cache.get(generation_key(namespace)) or 0)


def clear(namespace: str) -> int:
    """Invalidate the namespace and delete its stored entries where the backend can list
    them (Redis). Returns the number of entries deleted. Raises `CacheUnavailable`."""
    invalidate(namespace)
    if not hasattr(cache, "delete_pattern"):
        return 0  # LocMem: the old generation's entries expire with their TTL
    return int(backend.call("delete_pattern", f"{namespace}:*") or 0)


def flush_all() -> int:
    """`clear` every namespace; other cache users (sessions, rate-limit counters) are kept."""
    from project.cache.keys import namespaces

    return sum(clear(namespace) for namespace in namespaces())
