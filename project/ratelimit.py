"""Per-user limits on expensive work: whole-report runs, `fresh=1`, uploads, pipeline starts.

    @ratelimit("report-run")                       # a Django view, sync or async
    async def run_report(request, slug): ...

    @ratelimit("fresh", when=wants_fresh)          # only count requests that ask for it
    async def master_data(request): ...

    await ratelimit.acheck(request, "upload")     # inside a ninja operation (raises RateLimited)

Limits come from settings.RATE_LIMITS ("30/m", "20/h", "100/10m"). "5/m" allows a burst
of five, then one request every 12 s: no fixed window whose end lets a client send twice
the limit in a second (the generic cell rate algorithm, below: one key per user and limit,
moved atomically on the Redis every process shares). Past the limit the answer is 429
with the exact Retry-After, and the refused request is not counted. A cache that is down
lets requests through: a limit must not become an outage.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse

from project.cache import backend
from project.cache.backend import CacheUnavailable

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
UNIT_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    period: int  # seconds

    @classmethod
    def parse(cls, value: str) -> Limit:
        match = re.fullmatch(r"([1-9]\d*)/([1-9]?\d*)([smhd])", value)
        if not match:
            raise ImproperlyConfigured(f"rate limit {value!r} must look like 30/m, 20/h or 100/10m")
        count, multiple, unit = match.groups()
        return cls(int(count), int(multiple or 1) * UNITS[unit])

    def __str__(self) -> str:
        if self.period in UNIT_NAMES:
            return f"{self.count} per {UNIT_NAMES[self.period]}"
        return f"{self.count} per {self.period} seconds"


class RateLimited(Exception):
    def __init__(self, name: str, limit: Limit, retry_after: int) -> None:
        self.name, self.limit, self.retry_after = name, limit, retry_after
        super().__init__(f"Too many requests ({name}): the limit is {limit}. Try again in {retry_after} s.")

    @property
    def message(self) -> str:
        return str(self)

    def response(self, request: HttpRequest | None = None) -> HttpResponse:
        """429 with Retry-After: JSON for API clients, plain text for pages."""
        wants_json = request is not None and (
            request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")
        )
        response: HttpResponse
        if wants_json:
            response = JsonResponse({"detail": self.message, "retry_after": self.retry_after}, status=429)
        else:
            response = HttpResponse(self.message, status=429, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(self.retry_after)
        return response


def limit_for(name: str) -> Limit:
    try:
        return Limit.parse(settings.RATE_LIMITS[name])
    except KeyError:
        raise ImproperlyConfigured(
            f"no rate limit named {name!r} in settings.RATE_LIMITS; known: {', '.join(settings.RATE_LIMITS)}"
        ) from None


def identity(user: AbstractBaseUser | AnonymousUser, request: HttpRequest) -> str:
    """Who is counted: the user, or the client address for anonymous requests."""
    if user.is_authenticated:
        return f"user:{user.pk}"
    return f"addr:{request.META.get('REMOTE_ADDR', '-')}"


def _key(name: str, who: str) -> str:
    return f"ratelimit:{name}:{who}"


# The generic cell rate algorithm in one atomic step on the server. A limit of N per period
# lets a request through every period/N seconds, with a burst of N: the key holds the time
# the client's next request would be "due" if it kept to that pace. A request passes when
# it comes no more than a period ahead of its due time; then the due time moves on by one
# interval. A refused request moves nothing. The due time is stored as whole milliseconds,
# a value django-redis reads back as an int like any counter: reading every key of the
# cache must not fail on it.
_TAKE = """
local now, interval, period = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local wait = due + interval - period - now
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], string.format('%d', math.ceil(due + interval)), 'PX', math.ceil(due + interval - now))
return '0'
"""
_local_lock = threading.Lock()


def _take(key: str, limit: Limit, now: float) -> float:
    """Count one request against `limit` under `key`: 0 if it passes, else the seconds to wait."""
    interval = limit.period / limit.count
    client = getattr(cache, "client", None)
    if client is not None and hasattr(client, "get_client"):  # django-redis: one script, atomic
        server = client.get_client(write=True)
        args = (repr(now * 1000), repr(interval * 1000), limit.period * 1000)
        return float(server.eval(_TAKE, 1, cache.make_key(key), *args)) / 1000
    with _local_lock:  # an in-process cache is shared by this process's threads only
        due = max(float(cache.get(key) or 0), now)
        wait = due + interval - limit.period - now
        if wait <= 0:
            cache.set(key, due + interval, math.ceil(due + interval - now))
        return max(wait, 0.0)


def hit(name: str, who: str, *, now: float | None = None) -> None:
    """Count one request by `who` against limit `name`; raise RateLimited past it (sync)."""
    limit = limit_for(name)
    now = time.time() if now is None else now
    try:
        # Through the cache's breaker: a cache that is down costs one short timeout, then nothing.
        wait = backend.run("ratelimit", _take, _key(name, who), limit, now)
    except CacheUnavailable:
        return  # a limit must not become an outage: let the request through
    if wait > 0:
        raise RateLimited(name, limit, max(1, math.ceil(wait - 1e-6)))


def reset(name: str, who: str) -> None:
    """Forget `who`'s count for `name` (for operators and tests)."""
    cache.delete(_key(name, who))


async def _auser(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    # A ninja operation has authenticated already (bearer or session): request.auth.
    auth = getattr(request, "auth", None)
    if isinstance(auth, AbstractBaseUser):
        return auth
    return await request.auser()


def check(request: HttpRequest, name: str) -> None:
    """Count this request against `name`; raise RateLimited past it (sync views)."""
    auth = getattr(request, "auth", None)
    user = auth if isinstance(auth, AbstractBaseUser) else request.user
    hit(name, identity(user, request))


async def acheck(request: HttpRequest, name: str) -> None:
    """Count this request against `name`; raise RateLimited past it (async views, ninja)."""
    who = identity(await _auser(request), request)
    if backend.BREAKER.skipping():
        return  # the cache is down: no thread hop for a count that cannot be kept
    await sync_to_async(hit, thread_sensitive=False)(name, who)


def ratelimit(name: str, *, when: Callable[[HttpRequest], bool] | None = None) -> Callable[..., Any]:
    """Limit a view per user to settings.RATE_LIMITS[name]; `when` picks the requests that count."""
    limit_for(name)  # a misspelt name fails at import, not on the first request

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if when is None or when(request):
                    try:
                        await acheck(request, name)
                    except RateLimited as exc:
                        return exc.response(request)
                return await view(request, *args, **kwargs)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if when is None or when(request):
                try:
                    check(request, name)
                except RateLimited as exc:
                    return exc.response(request)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def wants_fresh(request: HttpRequest) -> bool:
    """The `when` for the "fresh" limit: requests that bypass the cache with ?fresh=1."""
    return request.GET.get("fresh") in {"1", "true", "yes"}
