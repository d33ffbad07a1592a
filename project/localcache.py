"""A short-lived in-process copy of hot reads, dropped at once in every process.

    USERS = LocalCache("users", ttl=10)
    stamp = await AUTH.aget()               # before loading; None: unknown, do not cache
    if (user := USERS.get(key, stamp)) is MISSING:
        user = await load()
        USERS.set(key, user, stamp)
    AUTH.bump()                              # after a write (sync; after the commit)

    entry = await localcache.load("tpa-list", "all", loader)   # project.cache.load, kept 5 s

Django's cache reads and the ORM each cost a thread hop (DESIGN.md, "Facts"); a signed-in
request used to pay four of them and two database round trips before the view ran. An
entry here is stamped with a shared *generation* read before its value was loaded; every
read checks the generation again (one native async Redis GET: no thread, no database) and
a bump anywhere (a session saved or deleted, a user saved) turns every process's copies
into misses before the next request. A generation that cannot be read (Redis down) is a
miss, never a hit. Without Redis nothing is kept: a process cannot tell whether another
(a second uvicorn worker, `manage.py changepassword`) changed a user. The one exception is
a kind of value that grants nothing (`unverified_ttl`: a report's definition), kept a few
seconds even then. Entries also expire after `ttl` seconds, which bounds anything no bump
covers.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Final, cast

from django.conf import settings
from django.db import transaction

from project.cache.backend import BREAKER, is_server_error

if TYPE_CHECKING:
    from project.cache import Entry

logger = logging.getLogger(__name__)


class Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


_UNVERIFIED: Final = Missing()  # the stamp of a copy stored while no generation could be read

# Every LocalCache, so tests can start with no copies at all (clear_all).
_caches: weakref.WeakSet[LocalCache] = weakref.WeakSet()


class LocalCache:
    """A bounded dict of (expiry, generation stamp, value, stored at) for one kind of value. A
    stamp is a generation, or a tuple of them for a value that depends on several (see tpa.cache).

    With `unverified_ttl`, a value that no permission depends on (a report's definition) is
    also kept while its generation cannot be read (Redis down, or no Redis): a copy stored
    less than that many seconds ago serves, so an outage does not cost every request the
    loads; an edit in another process shows after at most that long (in this process, the
    signal that bumps the generation clears the copies at once). Without it, an unknown
    generation is always a miss.
    """

    def __init__(self, name: str, *, ttl: float, max_entries: int = 10_000, unverified_ttl: float = 0) -> None:
        self.name, self.ttl, self.max_entries, self.unverified_ttl = name, ttl, max_entries, unverified_ttl
        self._entries: dict[Any, tuple[float, Hashable, Any, float]] = {}
        _caches.add(self)

    def get(self, key: Any, stamp: Hashable | None) -> Any:
        """The value stored under `key` with generation `stamp`, or MISSING."""
        if (entry := self._entries.get(key)) is None:
            return MISSING
        expires, stored_stamp, value, stored_at = entry
        now = time.monotonic()
        if stamp is None:  # not verifiable: only a recent copy, when this kind allows it
            return value if now - stored_at < self.unverified_ttl and expires > now else MISSING
        if stored_stamp != stamp or expires <= now:
            del self._entries[key]
            return MISSING
        return value

    def set(self, key: Any, value: Any, stamp: Hashable | None, *, expires_in: float | None = None) -> None:
        ttl = self.ttl if expires_in is None else min(self.ttl, expires_in)
        if stamp is None:
            if not self.unverified_ttl:
                return
            # Never equal to a generation: once it can be read again, this copy is a miss.
            stamp, ttl = _UNVERIFIED, min(ttl, self.unverified_ttl)
        if len(self._entries) >= self.max_entries:
            # Oldest first (insertion order): a hot key is stored again on its next miss.
            for old in list(itertools.islice(self._entries, self.max_entries // 10 + 1)):
                del self._entries[old]
        now = time.monotonic()
        self._entries[key] = (now + ttl, stamp, value, now)

    def delete(self, key: Any) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


def clear_all() -> None:
    """Drop every copy this process keeps (tests: a copy from one test's database must not
    answer in the next's)."""
    for copies in list(_caches):
        copies.clear()


def redis_url() -> str | None:
    """The Redis the Django cache uses, if it uses one."""
    config = settings.CACHES["default"]
    return str(config["LOCATION"]) if "redis" in config["BACKEND"].lower() else None


def _timeout() -> float:
    return float(settings.CACHES["default"].get("OPTIONS", {}).get("SOCKET_TIMEOUT", 1.0))


# One asyncio Redis client per event loop (its connections belong to the loop), closed when
# the loop ends: a one-shot loop (async_to_sync, a management command) must not leave its
# connections behind, and the client's reference to its loop would keep the entry alive.
# Keyed by URL too: a client of the Redis the settings named earlier must not answer for another.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()
_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def async_client(url: str) -> Any:
    import redis.asyncio

    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    if (client := clients.get(url)) is None:
        timeout = _timeout()
        client = clients[url] = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        if loop not in _keepers:
            _keepers[loop] = loop.create_task(_close_with_loop(loop, clients), name="localcache-redis-keeper")
    return client


async def _close_with_loop(loop: asyncio.AbstractEventLoop, clients: dict[str, Any]) -> None:
    try:
        await loop.create_future()  # until the loop's end cancels its tasks
    finally:
        _clients.pop(loop, None)
        _keepers.pop(loop, None)
        for client in clients.values():
            await client.aclose()


class _Reads:
    """One loop's reads of one generation: the read on the wire, and the one to send next."""

    def __init__(self) -> None:
        self.next: asyncio.Future[_Read] | None = None
        self.sending: asyncio.Task[None] | None = None


@dataclasses.dataclass(frozen=True)
class _Read:
    value: int | None
    others: dict[str, int] | None = None  # the other generations read with it (AUTH's read)


# A request reads the auth generation first (its user); the other generations it needs later
# (the TPA list's, the reports') come with that read, in one MGET instead of one GET each.
# They are as fresh as a read at the start of the request, so a bump that completed before
# the request is seen, as before; a bump this request makes drops its own copy of the value
# (`_forget`), so it reads its own writes. Only the task that read them uses them (the
# request's own: a test client's next request, on a loop of its own, reads again), and for
# SNAPSHOT_SECONDS at most, so a long streamed response reads again later.
SNAPSHOT_SECONDS = 1.0


@dataclasses.dataclass
class _Snapshot:
    task: weakref.ref[asyncio.Task[Any]]
    at: float
    values: dict[str, int]


_snapshot: contextvars.ContextVar[_Snapshot | None] = contextvars.ContextVar("fanout_generations", default=None)
# The generations this process reads besides AUTH: replaced, never changed in place, so a
# read on another thread's event loop never sees it change while it builds its MGET.
_companions: tuple[str, ...] = ()
_companions_lock = threading.Lock()


def _read_with_auth(key: str) -> None:
    global _companions
    if key not in _companions:
        with _companions_lock:
            if key not in _companions:
                _companions = (*_companions, key)


def new_request() -> None:
    """A request begins (project.middleware): the generations it reads are its own, even when
    it runs in the task of the one before (Django's AsyncClient)."""
    _snapshot.set(None)


def _from_snapshot(key: str) -> int | None:
    snapshot = _snapshot.get()
    if snapshot is None or snapshot.task() is not asyncio.current_task():
        return None
    if time.monotonic() - snapshot.at > SNAPSHOT_SECONDS:
        return None
    return snapshot.values.get(key)


def _keep_snapshot(values: dict[str, int]) -> None:
    if (task := asyncio.current_task()) is not None:
        _snapshot.set(_Snapshot(weakref.ref(task), time.monotonic(), dict(values)))  # this request's own


def _forget(key: str) -> None:
    """This request bumped `key`: its next read goes to Redis (from a thread too: the
    context sync_to_async copies holds the same snapshot)."""
    if (snapshot := _snapshot.get()) is not None:
        snapshot.values.pop(key, None)


def _generation(value: Any) -> int:
    return int(value or 0)  # raises on a value that is not digits (django-redis pickles others)


class Generation:
    """A counter shared by every process (a Redis key), read natively on the event loop.

    Concurrent readers share reads: a reader joins the next read to be sent, never one
    already on the wire (that one may predate a bump the reader must see), so N requests
    at once cost about two round trips instead of N."""

    def __init__(self, name: str = "", *, key: str = "", with_others: bool = False) -> None:
        self.key = key or f"fanout:localcache:{name}:generation"
        # AUTH: its read also brings the process's other generations (see _snapshot).
        self.with_others = with_others
        # A read in flight belongs to one event loop.
        self._reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reads] = weakref.WeakKeyDictionary()
        self._sync: dict[str, Any] = {}  # by URL, as the async clients

    def _async_client(self, url: str) -> Any:
        return async_client(url)

    async def aget(self) -> int | None:
        """The current generation; None when it cannot be read or there is no Redis (a miss)."""
        if (url := redis_url()) is None:
            return None
        if BREAKER.skipping():
            return None  # the cache is down (project.cache's breaker): no copy, and no wait on it
        if not self.with_others:
            if (known := _from_snapshot(self.key)) is not None:
                return known
            _read_with_auth(self.key)
        loop = asyncio.get_running_loop()
        reads = self._reads.setdefault(loop, _Reads())
        if (future := reads.next) is None:
            future = reads.next = loop.create_future()
            if reads.sending is None:
                self._send(url, reads)
        # Shielded: one reader going away must not cancel the read the others wait for.
        read = await asyncio.shield(future)
        if read.others is not None:
            _keep_snapshot(read.others)
        return read.value

    def _send(self, url: str, reads: _Reads) -> None:
        future, reads.next = reads.next, None
        assert future is not None
        reads.sending = asyncio.get_running_loop().create_task(self._read(url, reads, future))

    async def _read(self, url: str, reads: _Reads, future: asyncio.Future[_Read]) -> None:
        result = _Read(None)
        try:
            if self.with_others and (others := [key for key in _companions if key != self.key]):
                values = await self._async_client(url).mget([self.key, *others])
                known = {}
                for key, value in zip(others, values[1:], strict=True):
                    with suppress(ValueError):  # not a number: that generation's own read says so
                        known[key] = _generation(value)
                result = _Read(_generation(values[0]), known)
            else:
                result = _Read(_generation(await self._async_client(url).get(self.key)))
            BREAKER.succeeded()
        except Exception as exc:  # a cache outage must not fail the request, only skip the copy
            if is_server_error(exc):
                # One timeout opens the breaker every cache call shares: the next requests skip
                # the cache at once instead of each waiting out REDIS_TIMEOUT.
                BREAKER.failed(f"{type(exc).__name__}: {exc}")
            logger.warning("localcache: cannot read %s: %s", self.key, exc)
        finally:
            if not future.done():
                future.set_result(result)
            reads.sending = None
        if reads.next is not None:
            self._send(url, reads)

    def _incr(self) -> None:
        _forget(self.key)
        if (url := redis_url()) is None:
            return
        if BREAKER.skipping():
            # The cache is down, so no process serves a copy now (their reads miss too), and
            # copies made before live at most their ttl: say so, without waiting on the cache.
            logger.error("localcache: cache down, %s not bumped; copies live up to their ttl", self.key)
            return
        import redis

        try:
            if (client := self._sync.get(url)) is None:
                timeout = _timeout()
                client = self._sync[url] = redis.Redis.from_url(
                    url, socket_timeout=timeout, socket_connect_timeout=timeout
                )
            client.incr(self.key)
        except Exception as exc:
            if is_server_error(exc):
                BREAKER.failed(f"{type(exc).__name__}: {exc}")
            # Every process's copies live at most their ttl; say so loudly, it is a stale read.
            logger.error("localcache: cannot bump %s, copies live up to their ttl: %s", self.key, exc)

    def bump(self) -> None:
        """Drop every process's copies once the current transaction (if any) has committed:
        a reader that misses before the commit would otherwise store the old row again."""
        transaction.on_commit(self._incr)

    async def abump(self) -> None:
        """bump() from async code (the async ORM commits each call before it returns)."""
        _forget(self.key)
        if (url := redis_url()) is None:
            return
        if BREAKER.skipping():
            logger.error("localcache: cache down, %s not bumped; copies live up to their ttl", self.key)
            return
        try:
            await self._async_client(url).incr(self.key)
        except Exception as exc:
            if is_server_error(exc):
                BREAKER.failed(f"{type(exc).__name__}: {exc}")
            logger.error("localcache: cannot bump %s, copies live up to their ttl: %s", self.key, exc)


# Sessions and users: bumped when a session is saved or deleted and when a user is saved or deleted.
AUTH = Generation("auth", with_others=True)


# --- Copies of project.cache entries -------------------------------------------------------

ENTRIES = LocalCache("cache-entries", ttl=5)
_namespaces: dict[str, Generation] = {}


def invalidated(namespace: str) -> None:
    """project.cache.invalidate bumped `namespace`: this request reads its generation again."""
    _forget(namespace_generation(namespace).key)


def namespace_generation(namespace: str) -> Generation:
    """project.cache's generation of `namespace`: its Django cache key, whose integer
    django-redis stores as plain digits (a value that is not one reads as a miss)."""
    from django.core.cache import cache as django_cache

    # Looked up each time: the key follows the cache settings' prefix and version.
    key = django_cache.make_key(f"generation:{namespace}")
    if (generation := _namespaces.get(key)) is None:
        generation = _namespaces[key] = Generation(key=key)
    return generation


# Local misses of one entry under one stamp, per event loop: the first asks project.cache,
# the others wait for its answer (a herd of cold requests makes one read, not one each).
_loading: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary()
)


async def load[T](namespace: str, key: Any, loader: Callable[[], Awaitable[T]], *, fresh: bool = False) -> Entry[T]:
    """project.cache.load, served from this process for up to 5 s while the namespace's
    generation stands (project.cache.invalidate anywhere reaches the next read) and the
    entry is within the namespace's TTL. `fresh=True` reloads, and keeps what it loaded."""
    return (await load_stamped(namespace, key, loader, fresh=fresh))[0]


async def load_stamped[T](
    namespace: str, key: Any, loader: Callable[[], Awaitable[T]], *, fresh: bool = False
) -> tuple[Entry[T], int | None]:
    """`load`, and the namespace generation the entry was checked against (None: unknown),
    for a caller that keeps something derived from it (tpa.cache) under the same stamp."""
    from project import cache

    stamp = await namespace_generation(namespace).aget()
    local_key = (namespace, cache.make_key(namespace, key))
    entry = MISSING if fresh else ENTRIES.get(local_key, stamp)
    if not isinstance(entry, Missing) and time.time() - entry.stored_at <= settings.CACHE_TTLS[namespace]:
        return cast("Entry[T]", entry), stamp
    if stamp is None:
        return await cache.load(namespace, key, loader, fresh=fresh), stamp
    flights = _loading.setdefault(asyncio.get_running_loop(), {})
    flight_key = (local_key, stamp, fresh)
    if (flight := flights.get(flight_key)) is None:
        flight = flights[flight_key] = asyncio.ensure_future(
            _read_through(local_key, stamp, cache.load(namespace, key, loader, fresh=fresh))
        )
        flight.add_done_callback(functools.partial(_landed, flights, flight_key))
    # Shielded: one waiter going away must not cancel the read the others wait for.
    return await asyncio.shield(flight), stamp


async def _read_through[T](local_key: Any, stamp: int, read: Awaitable[Entry[T]]) -> Entry[T]:
    loaded = await read
    ENTRIES.set(local_key, dataclasses.replace(loaded, hit=True), stamp)  # served from here: a hit
    return loaded


def _landed(flights: dict[Any, asyncio.Future[Any]], key: Any, flight: asyncio.Future[Any]) -> None:
    flights.pop(key, None)
    if not flight.cancelled():
        flight.exception()  # retrieved: each waiter got it already, or had gone away


async def load_registered(namespace: str) -> Entry[Any]:
    """project.cache.load_registered (not fresh), served from this process as `load` is.
    Raises NoWarmer."""
    from project import cache

    if (registered := cache.warmer(namespace)) is None:
        raise cache.NoWarmer(namespace)
    return await load(namespace, registered.key, registered.loader)
