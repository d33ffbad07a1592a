"""Prometheus metrics for every call to an outside system.

Multi-process ready: with PROMETHEUS_MULTIPROC_DIR set (before the process starts, as
prometheus-client requires), each uvicorn worker writes its samples there and the
metrics view aggregates them all.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from project.sources.errors import SourceError

# Report panels are sub-second to tens of seconds; the buckets straddle the 200 ms goal.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60, 120)

SOURCE_CALLS = Counter(
    "fanout_source_calls_total",
    "Calls to a data source, by outcome (ok, timeout, unavailable, query, parameters, error).",
    ["source", "operation", "outcome"],
)
SOURCE_LATENCY = Histogram(
    "fanout_source_call_seconds",
    "Wall time of data-source calls, including any wait for a pool slot.",
    ["source", "operation"],
    buckets=LATENCY_BUCKETS,
)
POOL_SIZE = Gauge(
    "fanout_source_pool_size",
    "Configured connections (and executor threads) per source.",
    ["source"],
    multiprocess_mode="livesum",
)
POOL_IN_USE = Gauge(
    "fanout_source_pool_in_use", "Calls running on a source right now.", ["source"], multiprocess_mode="livesum"
)
POOL_WAITING = Gauge(
    "fanout_source_pool_waiting",
    "Calls waiting for a connection or executor slot.",
    ["source"],
    multiprocess_mode="livesum",
)

# Each workload (panels, exports, pipeline, health, cancel) has its own share of a source, so
# one cannot starve another (issue 10): its limit, what runs and what waits.
WORKLOAD_LIMIT = Gauge(
    "fanout_source_workload_limit",
    "Queries a workload may have in flight on a source.",
    ["source", "workload"],
    multiprocess_mode="livesum",
)
WORKLOAD_IN_FLIGHT = Gauge(
    "fanout_source_workload_in_flight",
    "Queries of a workload in flight on a source right now.",
    ["source", "workload"],
    multiprocess_mode="livesum",
)
WORKLOAD_WAITING = Gauge(
    "fanout_source_workload_waiting",
    "Queries of a workload waiting for their share of a source.",
    ["source", "workload"],
    multiprocess_mode="livesum",
)


@asynccontextmanager
async def track_call(source: str, operation: str) -> AsyncIterator[None]:
    """Count one call, its outcome and its latency, whatever happens inside."""
    start = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except SourceError as exc:
        outcome = exc.kind
        raise
    except BaseException:
        outcome = "error"
        raise
    finally:
        SOURCE_CALLS.labels(source, operation, outcome).inc()
        SOURCE_LATENCY.labels(source, operation).observe(time.perf_counter() - start)


def render_latest() -> bytes:
    """The current metrics in Prometheus text format, across processes when configured."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
