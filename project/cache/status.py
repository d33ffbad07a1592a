"""Every namespace's figures for the admin, the API and manage.py, across processes where the backend allows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from project.cache import backend
from project.cache.counters import STAT_FIELDS, flush_stats, stat_key
from project.cache.keys import generation_key, namespaces
from project.cache.warmers import _warmers

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
    shared_keys = [generation_key(n) for n in names] + [f"meta:{n}" for n in names]
    shared_keys += [stat_key(n, field) for n in names for field in STAT_FIELDS]
    try:
        shared = backend.call("get_many", shared_keys)
    except backend.CacheUnavailable as exc:
        shared, down = {}, str(exc)
    else:
        down = ""
    backend_name = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    listing = can_list_keys()
    result = []
    for name in names:
        gen = int(shared.get(generation_key(name)) or 0)
        meta = shared.get(f"meta:{name}") or {}
        row = NamespaceStatus(
            namespace=name,
            backend=backend_name,
            ttl=settings.CACHE_TTLS[name],
            generation=gen,
            hits=int(shared.get(stat_key(name, "hits")) or 0),
            misses=int(shared.get(stat_key(name, "misses")) or 0),
            loads=int(shared.get(stat_key(name, "loads")) or 0),
            keys=None,
            current_keys=None,
            sampled=False,
            oldest_age=None,
            newest_age=None,
            last_load_at=meta.get("last_load_at"),
            last_load_seconds=meta.get("last_load_seconds"),
            has_warmer=name in _warmers,
            note=down or ("" if listing else LOCMEM_NOTE),
        )
        if listing and not down:
            _measure_entries(row)
        result.append(row)
    return result


def _measure_entries(row: NamespaceStatus) -> None:
    keys = list(backend.call("iter_keys", f"{row.namespace}:*"))
    row.keys = len(keys)
    row.sampled = len(keys) > AGE_SAMPLE
    entries = backend.call("get_many", keys[:AGE_SAMPLE]).values() if keys else []
    now = time.time()
    ages = [now - e["t"] for e in entries if isinstance(e, dict) and e.get("g") == row.generation and "t" in e]
    row.current_keys = len(ages)
    if ages:
        row.oldest_age, row.newest_age = max(ages), min(ages)
