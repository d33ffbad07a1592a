"""The figures of the operations page: what /metrics exports, read by a person.

Per source and operation: calls, success rate, timeouts and p50/p95/p99 latency estimated
from the histogram buckets (as Prometheus' histogram_quantile does); pool and executor use;
cache hit ratios; the task queue; the queries in flight, each with a Cancel button that
cancels it on its database; and, from the query log, each source's last hour in five-minute
buckets (runs, failures, median and p95 latency) for the small trend charts. Figures come
from the prometheus-client registry, so in multi-process mode (PROMETHEUS_MULTIPROC_DIR)
they cover every worker, like /metrics.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Aggregate, Count, DateTimeField, FloatField, Func, Min, Q, Value
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

from reports.models import QueryLog


@dataclass
class OperationFigures:
    source: str
    operation: str
    outcomes: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative count
    seconds_total: float = 0.0

    @property
    def calls(self) -> int:
        return int(sum(self.outcomes.values()))

    @property
    def success_rate(self) -> float | None:
        return self.outcomes.get("ok", 0) / self.calls if self.calls else None

    @property
    def timeouts(self) -> int:
        return int(self.outcomes.get("timeout", 0))

    @property
    def failures(self) -> dict[str, int]:
        return {kind: int(n) for kind, n in sorted(self.outcomes.items()) if kind != "ok" and n}

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket holding the q-th observation; the largest
        finite bound when it falls in +Inf (histogram_quantile's convention)."""
        bounds = sorted(self.buckets)
        if not bounds or not (total := self.buckets[bounds[-1]]):
            return None
        rank = q * total
        lower, below = 0.0, 0.0
        for bound in bounds:
            count = self.buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower
                inside = count - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 0)
            lower, below = bound, count
        return lower

    @property
    def p50(self) -> float | None:
        return self.quantile(0.50)

    @property
    def p95(self) -> float | None:
        return self.quantile(0.95)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)


@dataclass
class PoolFigures:
    source: str
    size: float = 0
    in_use: float = 0
    waiting: float = 0


def _registry() -> Any:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def source_figures() -> tuple[list[OperationFigures], list[PoolFigures]]:
    """Every source operation's figures and every pool's use, from the metrics registry."""
    operations: dict[tuple[str, str], OperationFigures] = {}
    pools: dict[str, PoolFigures] = {}

    def op(labels: dict[str, str]) -> OperationFigures:
        key = (labels["source"], labels["operation"])
        return operations.setdefault(key, OperationFigures(*key))

    for metric in _registry().collect():
        for sample in metric.samples:
            labels, name = sample.labels, sample.name
            if name == "fanout_source_calls_total":
                figures = op(labels)
                figures.outcomes[labels["outcome"]] = figures.outcomes.get(labels["outcome"], 0) + sample.value
            elif name == "fanout_source_call_seconds_bucket":
                figures = op(labels)
                bound = float(labels["le"])
                figures.buckets[bound] = figures.buckets.get(bound, 0) + sample.value
            elif name == "fanout_source_call_seconds_sum":
                op(labels).seconds_total += sample.value
            elif name in {"fanout_source_pool_size", "fanout_source_pool_in_use", "fanout_source_pool_waiting"}:
                pool = pools.setdefault(labels["source"], PoolFigures(labels["source"]))
                attribute = name.removeprefix("fanout_source_pool_")
                setattr(pool, attribute, getattr(pool, attribute) + sample.value)
    return sorted(operations.values(), key=lambda f: (f.source, f.operation)), sorted(
        pools.values(), key=lambda p: p.source
    )


@dataclass
class QueueFigures:
    ready: int
    oldest_enqueued_at: datetime | None
    by_queue: dict[str, int]

    @property
    def oldest_wait(self) -> float | None:
        if self.oldest_enqueued_at is None:
            return None
        return (timezone.now() - self.oldest_enqueued_at).total_seconds()


async def queue_figures() -> QueueFigures:
    waiting = DBTaskResult.objects.filter(status=TaskResultStatus.READY)
    totals = await waiting.aaggregate(n=Count("id"), oldest=Min("enqueued_at"))
    by_queue: defaultdict[str, int] = defaultdict(int)
    async for row in waiting.values("queue_name").annotate(n=Count("id")).order_by("queue_name"):
        by_queue[row["queue_name"]] = row["n"]
    return QueueFigures(totals["n"], totals["oldest"], dict(by_queue))


# --- failure kinds and the last hour's trends ------------------------------------------------

FAILURE_WORDS = {
    "timeout": "timed out",
    "cancelled": "cancelled",
    "unavailable": "source unreachable",
    "query": "refused by the database",
    "parameters": "bad filter values",
    "error": "unexpected errors",
}


def failure_words(failures: dict[str, int]) -> list[tuple[int, str, str]]:
    """(count, words, kind) for each failure kind but timeouts (they have their own column)."""
    return [(n, FAILURE_WORDS.get(kind, kind), kind) for kind, n in failures.items() if kind != "timeout"]


REFRESH_SECONDS = 15  # how often the page reloads its figures
TREND_BUCKETS = 12  # five-minute buckets over the last hour
BUCKET = timedelta(minutes=5)


class Percentile(Aggregate):
    template = "PERCENTILE_CONT(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float) -> None:
        super().__init__(expression, fraction=fraction)


@dataclass
class SourceTrend:
    """One source's last hour: runs, failures and median/p95 latency per five minutes."""

    source: str
    start: datetime
    runs: list[int] = field(default_factory=lambda: [0] * TREND_BUCKETS)
    failed: list[int] = field(default_factory=lambda: [0] * TREND_BUCKETS)
    p50_ms: list[float | None] = field(default_factory=lambda: [None] * TREND_BUCKETS)
    p95_ms: list[float | None] = field(default_factory=lambda: [None] * TREND_BUCKETS)

    @property
    def total_runs(self) -> int:
        return sum(self.runs)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)

    @property
    def latest_p95(self) -> float | None:
        return next((value for value in reversed(self.p95_ms) if value is not None), None)

    def latency_line(self, width: int = 120, height: int = 28) -> str:
        """SVG polyline points of p95 latency, scaled to the hour's highest."""
        values = self.p95_ms
        top = max((value for value in values if value is not None), default=0) or 1
        step = width / (len(values) - 1)
        return " ".join(
            f"{index * step:.1f},{height - 2 - (value / top) * (height - 4):.1f}"
            for index, value in enumerate(values)
            if value is not None
        )

    def latest_point(self, width: int = 120, height: int = 28) -> tuple[str, str] | None:
        """Where the latest p95 sits on the line: a dot, so even one five-minute step shows."""
        points = self.latency_line(width, height).split()
        if not points:
            return None
        x, y = points[-1].split(",")
        return x, y

    def failure_bars(self, width: int = 120, height: int = 28) -> list[tuple[float, float, float, int]]:
        """(x, y, height, count) of a bar per bucket that had failures, scaled to the busiest bucket."""
        top = max(self.runs) or 1
        slot = width / len(self.failed)
        return [
            (index * slot + 1, height - max(2.0, n / top * height), max(2.0, n / top * height), n)
            for index, n in enumerate(self.failed)
            if n
        ]


async def source_trends(now: datetime | None = None) -> list[SourceTrend]:
    """Per source, from the query log: panel runs that reached the database (cache hits excluded)."""
    now = now or timezone.now()
    start = now - BUCKET * TREND_BUCKETS
    bucket = Func(Value(BUCKET), "created_at", Value(start), function="date_bin", output_field=DateTimeField())
    rows = (
        QueryLog.objects.filter(created_at__gt=start, cache_hit=False)
        .annotate(bucket=bucket)
        .values("source", "bucket")
        .annotate(
            runs=Count("id"),
            failed=Count("id", filter=~Q(error_kind="")),
            p50=Percentile("duration_ms", 0.5),
            p95=Percentile("duration_ms", 0.95),
        )
        .order_by("source", "bucket")
    )
    trends: dict[str, SourceTrend] = {}
    async for row in rows:
        trend = trends.setdefault(row["source"], SourceTrend(row["source"], start))
        index = min(TREND_BUCKETS - 1, max(0, int((row["bucket"] - start) / BUCKET)))
        trend.runs[index] += row["runs"]
        trend.failed[index] += row["failed"]
        trend.p50_ms[index], trend.p95_ms[index] = row["p50"], row["p95"]
    return list(trends.values())
