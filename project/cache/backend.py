"""Every call to the cache server, under a small fixed budget.

A cache that is slow or gone must cost a page a few milliseconds, not a timeout per call:
each call has the short socket timeout of settings (REDIS_TIMEOUT), and the first failure
opens a circuit breaker that answers "unavailable" at once for CACHE_BREAKER_SECONDS.
After that one caller probes the server again (the others still skip it) and its result
closes or reopens the breaker. Calls run on the default executor, not the one
thread-sensitive thread, so a stuck socket never queues other requests' sync work.

django-redis runs with IGNORE_EXCEPTIONS (other cache users, such as rate limits, want a
miss on failure), which hides failures from its cache methods; the calls here go to its
client, which raises them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


class CacheUnavailable(Exception):
    """The cache server could not be reached (or the breaker says it is down)."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"the cache is unavailable ({operation}): {reason}")
        self.operation = operation
        self.reason = reason


class Breaker:
    """Closed: calls go through. Open: they fail at once. Then one probe decides (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_until = 0.0  # 0: closed
        self._probing = False
        self.last_error = ""

    def allow(self) -> bool:
        with self._lock:
            if not self._open_until:
                return True
            if self._probing or time.monotonic() < self._open_until:
                return False
            self._probing = True
            return True

    def skipping(self) -> bool:
        """Open and not yet due for a probe (does not take the probe)."""
        with self._lock:
            return bool(self._open_until) and (self._probing or time.monotonic() < self._open_until)

    def succeeded(self) -> None:
        with self._lock:
            self._open_until, self._probing = 0.0, False

    def failed(self, error: str) -> None:
        with self._lock:
            self._open_until = time.monotonic() + float(settings.CACHE_BREAKER_SECONDS)
            self._probing, self.last_error = False, error

    @property
    def is_open(self) -> bool:
        return bool(self._open_until)

    def reset(self) -> None:
        self.succeeded()


BREAKER = Breaker()


def is_server_error(exc: BaseException) -> bool:
    """Whether `exc` says the server is slow or gone (a ValueError from incr of a missing key
    does not). django-redis raises ConnectionInterrupted from the redis-py error."""
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, OSError | RedisError):
            return True
        chain = chain.__cause__
    return False


def call(operation: str, *args: Any, **kwargs: Any) -> Any:
    """`operation` (a cache method name) on the server, or CacheUnavailable (sync)."""
    target = getattr(cache, "client", cache)  # django-redis: its client raises what the cache would ignore
    return run(operation, getattr(target, operation), *args, **kwargs)


def run[T](operation: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`function` (which talks to the cache server) under the breaker, or CacheUnavailable (sync)."""
    if not BREAKER.allow():
        raise _down(operation)
    try:
        result = function(*args, **kwargs)
    except Exception as exc:
        if not is_server_error(exc):
            raise
        BREAKER.failed(f"{type(exc).__name__}: {exc}")
        logger.warning(
            "cache %s failed; treating the cache as down for %g s", operation, settings.CACHE_BREAKER_SECONDS
        )
        raise CacheUnavailable(operation, str(exc) or type(exc).__name__) from exc
    BREAKER.succeeded()
    return result


async def acall(operation: str, *args: Any, **kwargs: Any) -> Any:
    if BREAKER.skipping():  # not even a thread hop while the cache is down
        raise _down(operation)
    return await sync_to_async(_call_args, thread_sensitive=False)(operation, args, kwargs)


def _call_args(operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return call(operation, *args, **kwargs)


def _down(operation: str) -> CacheUnavailable:
    return CacheUnavailable(operation, f"down after {BREAKER.last_error or 'a failure'}; not retried yet")
