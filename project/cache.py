"""The one cache module: namespaced, versioned, one load per miss (DESIGN.md, decision 5).

    entry = await load("tpa-list", "all", load_tpas)          # cache-aside
    entry.value, entry.hit, entry.age                           # what came back
    invalidate("tpa-list")                                      # every process, at once

Keys are `<namespace>:<sha of the key parts>`. Each entry stores the namespace generation
it was loaded under; one `get_many` reads the entry and the current generation together,
so invalidating (bumping the generation) reaches every web process on its next read and
a read costs one cache round trip. Concurrent misses for one key load once: inside a
process they share one future, across processes one wins a short `add` lock and the
others wait for its result (falling back to loading themselves if it never comes).
A cache that is down counts as a miss: the page still loads, only slower.

Hits, misses and loads are also counted in the cache itself (`stats:<namespace>:<field>`),
so the admin sees every process's figures. The hot path only bumps an in-process counter;
the counts reach the cache every CACHE_STATS_FLUSH_SECONDS from a background thread, and at
exit. Apps register a warmer per namespace (`register_warmer`) so the admin, the API and
`manage.py cache_warm` can reload it on demand.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long one process may hold the load lock of a key before others load themselves.
LOCK_SECONDS = 30
# How often a process that lost the lock checks for the winner's result.
WAIT_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    value: T
    stored_at: float  # unix time the value was loaded
    hit: bool
    stale: bool = False

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.stored_at)


@dataclass
class Stats:
    """This process's counters for one namespace (the admin adds up what it can see)."""

    hits: int = 0
    misses: int = 0
    loads: int = 0
    last_load_at: float | None = None
    last_load_seconds: float | None = None
    keys: set[str] = field(default_factory=set)


STATS: dict[str, Stats] = defaultdict(Stats)
_inflight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary()
)
_background: set[asyncio.Task[Any]] = set()


def namespaces() -> dict[str, int]:
    """Each namespace and its TTL in seconds."""
    return dict(settings.CACHE_TTLS)


def _check(namespace: str) -> None:
    if namespace not in settings.CACHE_TTLS:
        raise ValueError(f"unknown cache namespace {namespace!r}; known: {', '.join(settings.CACHE_TTLS)}")


def make_key(namespace: str, *parts: Any) -> str:
    """A short, safe cache key for any JSON-able key parts."""
    _check(namespace)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"{namespace}:{digest}"


def _generation_key(namespace: str) -> str:
    return f"generation:{namespace}"


async def load(
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
    stats = STATS[namespace]
    generation, cached = await _read(namespace, full_key)
    if not fresh and cached is not None and cached.get("g") == generation:
        age = time.time() - cached["t"]
        if age <= ttl:
            stats.hits += 1
            _count(namespace, "hits")
            return Entry(cached["v"], cached["t"], hit=True)
        if age <= ttl + stale_while_revalidate:
            stats.hits += 1
            _count(namespace, "hits")
            _refresh_in_background(namespace, full_key, generation, loader, ttl, stale_while_revalidate)
            return Entry(cached["v"], cached["t"], hit=True, stale=True)
    stats.misses += 1
    _count(namespace, "misses")
    return await _single_flight(namespace, full_key, generation, loader, ttl, stale_while_revalidate, fresh)


async def _read(namespace: str, full_key: str) -> tuple[int, dict[str, Any] | None]:
    try:
        found = await cache.aget_many([_generation_key(namespace), full_key])
    except Exception:  # the cache being down must not take the page down
        logger.warning("cache read failed for %s", full_key, exc_info=True)
        return 0, None
    return int(found.get(_generation_key(namespace)) or 0), found.get(full_key)


async def _single_flight(
    namespace: str,
    full_key: str,
    generation: int,
    loader: Callable[[], Awaitable[T]],
    ttl: int,
    stale_while_revalidate: int,
    fresh: bool,
) -> Entry[T]:
    inflight = _inflight.setdefault(asyncio.get_running_loop(), {})
    while (future := inflight.get(full_key)) is not None:
        # Someone in this process is loading it already: share their result, unless the
        # one loading was cancelled (its browser went away): then load it ourselves.
        try:
            return Entry(*(await asyncio.shield(future)), hit=True)
        except _LoaderCancelled:
            continue
    future = asyncio.get_running_loop().create_future()
    inflight[full_key] = future
    try:
        value, stored_at, hit = await _load_across_processes(
            namespace, full_key, generation, loader, ttl, stale_while_revalidate, fresh
        )
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
        inflight.pop(full_key, None)


class _LoaderCancelled(Exception):
    """The request that was loading a key went away; those waiting on it load it themselves."""


async def _load_across_processes(
    namespace: str,
    full_key: str,
    generation: int,
    loader: Callable[[], Awaitable[T]],
    ttl: int,
    stale_while_revalidate: int,
    fresh: bool,
) -> tuple[T, float, bool]:
    lock_key = f"lock:{full_key}:{generation}"
    try:
        won = await cache.aadd(lock_key, 1, LOCK_SECONDS)
    except Exception:
        won = True  # no cache, no lock: load
    if not won:
        deadline = time.monotonic() + LOCK_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(WAIT_INTERVAL)
            current, cached = await _read(namespace, full_key)
            if cached is not None and cached.get("g") == current and (fresh is False or cached["t"] > time.time() - 1):
                return cached["v"], cached["t"], True
            try:
                if await cache.aget(lock_key) is None:
                    break  # the winner failed or gave up: load ourselves
            except Exception:
                break
    try:
        return (*await _load_and_store(namespace, full_key, generation, loader, ttl, stale_while_revalidate), False)
    finally:
        try:
            await cache.adelete(lock_key)
        except Exception:
            pass


async def _load_and_store(
    namespace: str,
    full_key: str,
    generation: int,
    loader: Callable[[], Awaitable[T]],
    ttl: int,
    stale_while_revalidate: int,
) -> tuple[T, float]:
    stats = STATS[namespace]
    started = time.perf_counter()
    value = await loader()
    stored_at = time.time()
    stats.loads += 1
    _count(namespace, "loads")
    stats.last_load_at = stored_at
    stats.last_load_seconds = time.perf_counter() - started
    stats.keys.add(full_key)
    try:
        await cache.aset_many(
            {
                full_key: {"v": value, "t": stored_at, "g": generation},
                f"meta:{namespace}": {"last_load_at": stored_at, "last_load_seconds": stats.last_load_seconds},
            },
            ttl + stale_while_revalidate,
        )
    except Exception:
        logger.warning("cache write failed for %s", full_key, exc_info=True)
    return value, stored_at


def _refresh_in_background(
    namespace: str,
    full_key: str,
    generation: int,
    loader: Callable[[], Awaitable[T]],
    ttl: int,
    stale_while_revalidate: int,
) -> None:
    inflight = _inflight.setdefault(asyncio.get_running_loop(), {})
    if full_key in inflight:
        return

    async def refresh() -> None:
        try:
            await _single_flight(namespace, full_key, generation, loader, ttl, stale_while_revalidate, fresh=True)
        except Exception:
            logger.warning("background refresh of %s failed", full_key, exc_info=True)

    task = asyncio.ensure_future(refresh())
    _background.add(task)
    task.add_done_callback(_background.discard)


def invalidate(namespace: str) -> int:
    """Bump the namespace's generation: every process misses on its next read. Returns it."""
    _check(namespace)
    key = _generation_key(namespace)
    cache.add(key, 0, None)
    try:
        generation = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, None)
        generation = 1
    STATS[namespace].keys.clear()
    if generation is None:
        # The cache is down (django-redis ignores the error): there is nothing to invalidate,
        # and the save that asked for it must not fail.
        logger.warning("cache down: could not invalidate %s", namespace)
        return 0
    return int(generation)


async def ainvalidate(namespace: str) -> int:
    from asgiref.sync import sync_to_async

    return await sync_to_async(invalidate)(namespace)


def generation(namespace: str) -> int:
    _check(namespace)
    return int(cache.get(_generation_key(namespace)) or 0)


def clear(namespace: str) -> int:
    """Invalidate the namespace and delete its stored entries where the backend can list
    them (Redis). Returns the number of entries deleted."""
    invalidate(namespace)
    if not hasattr(cache, "delete_pattern"):
        return 0  # LocMem: the old generation's entries expire with their TTL
    return int(cache.delete_pattern(f"{namespace}:*") or 0)


def flush_all() -> int:
    """`clear` every namespace; other cache users (sessions, rate-limit counters) are kept."""
    return sum(clear(namespace) for namespace in namespaces())


# --- Warmers ------------------------------------------------------------------------------


class NoWarmer(LookupError):
    def __init__(self, namespace: str) -> None:
        super().__init__(f"no warmer is registered for the cache namespace {namespace!r}")
        self.namespace = namespace


@dataclass(frozen=True, slots=True)
class Warmer:
    loader: Callable[[], Awaitable[Any]]
    key: Any


_warmers: dict[str, Warmer] = {}


def register_warmer(namespace: str, loader: Callable[[], Awaitable[Any]], *, key: Any = "all") -> None:
    """Make `loader` the way to fill `namespace` (under `key`) on demand.

    Call it from an AppConfig.ready(); read the same value in views with
    `await load_registered(namespace)`, so a warm fills exactly what views read.
    """
    _check(namespace)
    _warmers[namespace] = Warmer(loader, key)


def warmer(namespace: str) -> Warmer | None:
    _check(namespace)
    return _warmers.get(namespace)


async def load_registered(namespace: str, *, fresh: bool = False) -> Entry[Any]:
    """The namespace's value as its registered warmer loads it (cached). Raises NoWarmer."""
    if (registered := warmer(namespace)) is None:
        raise NoWarmer(namespace)
    return await load(namespace, registered.key, registered.loader, fresh=fresh)


async def warm(namespace: str) -> Entry[Any]:
    """Reload the namespace now through its warmer (once, however many ask at once)."""
    return await load_registered(namespace, fresh=True)


# --- Counters shared across processes -------------------------------------------------------

STAT_FIELDS = ("hits", "misses", "loads")
_pending: defaultdict[tuple[str, str], int] = defaultdict(int)
_pending_lock = threading.Lock()
_last_flush = time.monotonic()
_flushing = False


def _stat_key(namespace: str, name: str) -> str:
    return f"stats:{namespace}:{name}"


def _count(namespace: str, name: str) -> None:
    global _last_flush, _flushing
    with _pending_lock:
        _pending[(namespace, name)] += 1
        due = not _flushing and time.monotonic() - _last_flush >= getattr(settings, "CACHE_STATS_FLUSH_SECONDS", 5.0)
        if due:
            _flushing = True
            _last_flush = time.monotonic()
    if due:
        from asgiref.sync import sync_to_async

        task = asyncio.ensure_future(sync_to_async(flush_stats, thread_sensitive=False)())
        _background.add(task)
        task.add_done_callback(_flush_done)


def _flush_done(task: asyncio.Task[Any]) -> None:
    global _flushing
    _background.discard(task)
    _flushing = False  # also when the loop ended before the flush ran (counts stay pending)


def flush_stats() -> None:
    """Add this process's pending counts to the shared counters (sync: call it in a thread)."""
    global _pending, _flushing
    with _pending_lock:
        pending, _pending = _pending, defaultdict(int)
    try:
        for (namespace, name), n in pending.items():
            key = _stat_key(namespace, name)
            cache.add(key, 0, None)
            try:
                cache.incr(key, n)
            except ValueError:  # evicted between add and incr
                cache.set(key, n, None)
    except Exception:
        logger.warning("could not store cache counters", exc_info=True)
    finally:
        _flushing = False


atexit.register(flush_stats)


# --- Status, for the admin, the API and manage.py ------------------------------------------

# Entries read to measure ages; a namespace with more keys is sampled.
AGE_SAMPLE = 500


@dataclass
class NamespaceStatus:
    namespace: str
    backend: str
    ttl: int
    generation: int
    hits: int
    misses: int
    loads: int
    keys: int | None  # stored entries, all generations (None: the backend cannot list them)
    current_keys: int | None  # of those, entries of the current generation (in the sample)
    sampled: bool
    oldest_age: float | None
    newest_age: float | None
    last_load_at: float | None
    last_load_seconds: float | None
    has_warmer: bool
    note: str = ""

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "backend": self.backend,
            "ttl": self.ttl,
            "generation": self.generation,
            "hits": self.hits,
            "misses": self.misses,
            "loads": self.loads,
            "hit_ratio": self.hit_ratio,
            "keys": self.keys,
            "current_keys": self.current_keys,
            "sampled": self.sampled,
            "oldest_age": self.oldest_age,
            "newest_age": self.newest_age,
            "last_load_at": self.last_load_at,
            "last_load_seconds": self.last_load_seconds,
            "has_warmer": self.has_warmer,
            "note": self.note,
        }


def can_list_keys() -> bool:
    return hasattr(cache, "iter_keys")  # django-redis; LocMem keeps each process's keys to itself


LOCMEM_NOTE = (
    "Local-memory cache: every process has its own copy, so key counts and entry ages "
    "are not visible here, and hits and misses are this process's only."
)


def status() -> list[NamespaceStatus]:
    """Every namespace's figures, across processes where the backend allows (sync)."""
    flush_stats()
    names = list(namespaces())
    shared_keys = [_generation_key(n) for n in names] + [f"meta:{n}" for n in names]
    shared_keys += [_stat_key(n, field) for n in names for field in STAT_FIELDS]
    shared = cache.get_many(shared_keys)
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    listing = can_list_keys()
    result = []
    for name in names:
        gen = int(shared.get(_generation_key(name)) or 0)
        meta = shared.get(f"meta:{name}") or {}
        row = NamespaceStatus(
            namespace=name,
            backend=backend,
            ttl=settings.CACHE_TTLS[name],
            generation=gen,
            hits=int(shared.get(_stat_key(name, "hits")) or 0),
            misses=int(shared.get(_stat_key(name, "misses")) or 0),
            loads=int(shared.get(_stat_key(name, "loads")) or 0),
            keys=None,
            current_keys=None,
            sampled=False,
            oldest_age=None,
            newest_age=None,
            last_load_at=meta.get("last_load_at"),
            last_load_seconds=meta.get("last_load_seconds"),
            has_warmer=name in _warmers,
            note="" if listing else LOCMEM_NOTE,
        )
        if listing:
            _measure_entries(row)
        result.append(row)
    return result


def _measure_entries(row: NamespaceStatus) -> None:
    keys = list(cache.iter_keys(f"{row.namespace}:*"))
    row.keys = len(keys)
    row.sampled = len(keys) > AGE_SAMPLE
    entries = cache.get_many(keys[:AGE_SAMPLE]).values() if keys else []
    now = time.time()
    ages = [now - e["t"] for e in entries if isinstance(e, dict) and e.get("g") == row.generation and "t" in e]
    row.current_keys = len(ages)
    if ages:
        row.oldest_age, row.newest_age = max(ages), min(ages)
