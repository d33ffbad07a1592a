"""Warmers: one way per namespace to fill it on demand (the admin, the API, `manage.py cache_warm`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from project.cache.keys import check
from project.cache.loading import Entry, load


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
    check(namespace)
    _warmers[namespace] = Warmer(loader, key)


def warmer(namespace: str) -> Warmer | None:
    check(namespace)
    return _warmers.get(namespace)


async def load_registered(namespace: str, *, fresh: bool = False) -> Entry[Any]:
    """The namespace's value as its registered warmer loads it (cached). Raises NoWarmer."""
    if (registered := warmer(namespace)) is None:
        raise NoWarmer(namespace)
    return await load(namespace, registered.key, registered.loader, fresh=fresh)


async def warm(namespace: str) -> Entry[Any]:
    """Reload the namespace now through its warmer (once, however many ask at once)."""
    return await load_registered(namespace, fresh=True)
