"""Hits, misses and loads: counted in this process, added up across processes in the cache.

The hot path only bumps an in-process counter; the counts reach the cache every
CACHE_STATS_FLUSH_SECONDS from a short-lived daemon thread (never a task of an event
loop, which a one-shot loop would cancel or leave behind), and at exit.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings

from project.cache import backend

logger = logging.getLogger(__name__)

STAT_FIELDS = ("hits", "misses", "loads")


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
_pending: defaultdict[tuple[str, str], int] = defaultdict(int)
_pending_lock = threading.Lock()
_last_flush = time.monotonic()
_flushing = False


def stat_key(namespace: str, name: str) -> str:
    return f"stats:{namespace}:{name}"


def count(namespace: str, name: str) -> None:
    """Count one hit, miss or load; now and then, share the pending counts."""
    global _last_flush, _flushing
    setattr(STATS[namespace], name, getattr(STATS[namespace], name) + 1)
    with _pending_lock:
        _pending[(namespace, name)] += 1
        due = not _flushing and time.monotonic() - _last_flush >= float(settings.CACHE_STATS_FLUSH_SECONDS)
        if due:
            _flushing = True
            _last_flush = time.monotonic()
    if due:
        threading.Thread(target=flush_stats, name="cache-stats-flush", daemon=True).start()


def flush_stats() -> None:
    """Add this process's pending counts to the shared counters (sync: call it in a thread)."""
    global _pending, _flushing
    with _pending_lock:
        pending, _pending = _pending, defaultdict(int)
    try:
        for (namespace, name), n in pending.items():
            key = stat_key(namespace, name)
            backend.call("add", key, 0, None)
            try:
                backend.call("incr", key, n)
            except ValueError:  # evicted between add and incr
                backend.call("set", key, n, None)
    except backend.CacheUnavailable:
        logger.warning("could not store cache counters", exc_info=True)
    finally:
        _flushing = False


atexit.register(flush_stats)
