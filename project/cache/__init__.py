"""The one cache module: namespaced, versioned, one load per miss (DESIGN.md, decision 5).

    entry = await cache.load("tpa-list", "all", load_tpas)     # cache-aside
    entry.value, entry.hit, entry.age                           # what came back
    cache.invalidate("tpa-list")                                # every process, at once;
                                                                # raises CacheUnavailable

- `loading`: cache-aside reads, single flight (per generation), stale-while-revalidate,
  invalidation;
- `backend`: every call to the cache server, with a short timeout and a circuit breaker;
- `counters`: hits, misses and loads, shared across processes;
- `warmers`: how each namespace is filled on demand;
- `status`: the figures the admin, the API and `manage.py cache_status` show.
"""

from __future__ import annotations

from project.cache.backend import BREAKER, CacheUnavailable
from project.cache.counters import STAT_FIELDS, STATS, Stats, flush_stats
from project.cache.keys import make_key, namespaces
from project.cache.loading import (
    LOCK_SECONDS,
    WAIT_INTERVAL,
    Entry,
    Load,
    ainvalidate,
    clear,
    flush_all,
    generation,
    invalidate,
    load,
)
from project.cache.status import AGE_SAMPLE, LOCMEM_NOTE, NamespaceStatus, can_list_keys, status
from project.cache.warmers import NoWarmer, Warmer, _warmers, load_registered, register_warmer, warm, warmer

__all__ = [
    "AGE_SAMPLE",
    "BREAKER",
    "LOCK_SECONDS",
    "LOCMEM_NOTE",
    "STATS",
    "STAT_FIELDS",
    "WAIT_INTERVAL",
    "CacheUnavailable",
    "Entry",
    "Load",
    "NamespaceStatus",
    "NoWarmer",
    "Stats",
    "Warmer",
    "_warmers",
    "ainvalidate",
    "can_list_keys",
    "clear",
    "flush_all",
    "flush_stats",
    "generation",
    "invalidate",
    "load",
    "load_registered",
    "make_key",
    "namespaces",
    "register_warmer",
    "status",
    "warm",
    "warmer",
]
