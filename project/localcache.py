"""A short-lived in-process copy of hot reads, dropped at once in every process.

    USERS = LocalCache("users", ttl=10)
    stamp = await AUTH.aget()               # before loading; None: unknown, do not cache
    if (user := USERS.get(key, stamp)) is MISSING:
        user = await load()
        USERS.set(key, user, stamp)
    AUTH.bump()                              # after a write (sync; after the commit)

Django's cache reads and the ORM each cost a thread hop (DESIGN.md, "Facts"); a signed-in
request used to pay four of them and two database round trips before the view ran. An
entry here is stamped with a shared *generation* read before its value was loaded; every
read checks the generation again (one native async Redis GET: no thread, no database) and
a bump anywhere (a session saved or deleted, a user saved) turns every process's copies
into misses before the next request. A generation that cannot be read (Redis down) is a
miss, never a hit. Without Redis nothing is kept: a process cannot tell whether another
(a second uvicorn worker, `manage.py changepassword`) changed a user. Entries also expire
after `ttl` seconds, which bounds anything no bump covers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref
from typing import Any, Final

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


class Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


class LocalCache:
    """A bounded dict of (expiry, generation stamp, value) for one kind of value."""

    def __init__(self, name: str, *, ttl: float, max_entries: int = 10_000) -> None:
        self.name, self.ttl, self.max_entries = name, ttl, max_entries
        self._entries: dict[Any, tuple[float, int, Any]] = {}

    def get(self, key: Any, stamp: int | None) -> Any:
        """The value stored under `key` with generation `stamp`, or MISSING."""
        if stamp is None or (entry := self._entries.get(key)) is None:
            return MISSING
        expires, stored_stamp, value = entry
        if stored_stamp != stamp or expires <= time.monotonic():
            del self._entries[key]
            return MISSING
        return value

    def set(self, key: Any, value: Any, stamp: int | None, *, expires_in: float | None = None) -> None:
        if stamp is None:
            return
        if len(self._entries) >= self.max_entries:
            # Oldest first (insertion order): a hot key is stored again on its next miss.
            for old in list(itertools.islice(self._entries, self.max_entries // 10 + 1)):
                del self._entries[old]
        ttl = self.ttl if expires_in is None else min(self.ttl, expires_in)
        self._entries[key] = (time.monotonic() + ttl, stamp, value)

    def delete(self, key: Any) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


def redis_url() -> str | None:
    """The Redis the Django cache uses, if it uses one."""
    config = settings.CACHES["default"]
    return str(config["LOCATION"]) if "redis" in config["BACKEND"].lower() else None


class Generation:
    """A counter shared by every process (a Redis key), read natively on the event loop."""

    def __init__(self, name: str) -> None:
        self.key = f"fanout:localcache:{name}:generation"
        # An asyncio Redis client belongs to the loop it first ran on.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._sync: Any = None

    def _timeout(self) -> float:
        return float(settings.CACHES["default"].get("OPTIONS", {}).get("SOCKET_TIMEOUT", 1.0))

    def _async_client(self, url: str) -> Any:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        if (client := self._clients.get(loop)) is None:
            timeout = self._timeout()
            client = redis.asyncio.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            self._clients[loop] = client
        return client

    async def aget(self) -> int | None:
        """The current generation; None when it cannot be read or there is no Redis (a miss)."""
        if (url := redis_url()) is None:
            return None
        try:
            value = await self._async_client(url).get(self.key)
        except Exception as exc:  # a cache outage must not fail the request, only skip the copy
            logger.warning("localcache: cannot read %s: %s", self.key, exc)
            return None
        return int(value or 0)

    def _incr(self) -> None:
        if (url := redis_url()) is None:
            return
        import redis

        try:
            if self._sync is None:
                timeout = self._timeout()
                self._sync = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            self._sync.incr(self.key)
        except Exception as exc:
            # Every process's copies live at most their ttl; say so loudly, it is a stale read.
            logger.error("localcache: cannot bump %s, copies live up to their ttl: %s", self.key, exc)

    def bump(self) -> None:
        """Drop every process's copies once the current transaction (if any) has committed:
        a reader that misses before the commit would otherwise store the old row again."""
        transaction.on_commit(self._incr)

    async def abump(self) -> None:
        """bump() from async code (the async ORM commits each call before it returns)."""
        if (url := redis_url()) is None:
            return
        try:
            await self._async_client(url).incr(self.key)
        except Exception as exc:
            logger.error("localcache: cannot bump %s, copies live up to their ttl: %s", self.key, exc)


# Sessions and users: bumped when a session is saved or deleted and when a user is saved or deleted.
AUTH = Generation("auth")
