from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.tasks import task
from django.utils import timezone

from ops.figures import OperationFigures, source_figures
from project.metrics import POOL_IN_USE, POOL_SIZE, SOURCE_CALLS, SOURCE_LATENCY
from reports.models import QueryLog


@task()
def noop() -> None:
    """A task nobody runs in these tests: it stays in the queue."""


def record_calls(source: str, operation: str, latencies: list[float], outcomes: list[str]) -> None:
    # The same calls project.metrics.track_call records around every source call.
    for seconds, outcome in zip(latencies, outcomes, strict=True):
        SOURCE_CALLS.labels(source, operation, outcome).inc()
        SOURCE_LATENCY.labels(source, operation).observe(seconds)


def test_it_shows_calls_success_timeouts_and_percentiles_per_source(owner_client) -> None:
    operation = f"query-{uuid.uuid4().hex[:6]}"
    record_calls("postgres", operation, [0.04] * 8 + [0.4, 3.0], ["ok"] * 8 + ["ok", "timeout"])
    figures = next(f for f in source_figures()[0] if f.operation == operation)
    assert (figures.calls, figures.timeouts, figures.success_rate) == (10, 1, 0.9)
    assert figures.p50 is not None and 0.025 < figures.p50 <= 0.05
    assert figures.p99 is not None and 2 < figures.p99 <= 5
    html = owner_client.get("/ops/").content.decode()
    row = html[html.index(f"<td>{operation}</td>") :].split("</tr>")[0]
    assert "<td>10</td>" in row and "90.0%" in row and "<td>1</td>" in row


def test_it_estimates_percentiles_from_buckets_as_prometheus_does() -> None:
    figures = OperationFigures("s", "o", buckets={0.1: 50.0, 0.2: 100.0, float("inf"): 100.0})
    assert figures.p50 == pytest.approx(0.1)
    assert figures.quantile(0.75) == pytest.approx(0.15)
    beyond = OperationFigures("s", "o", buckets={0.1: 0.0, float("inf"): 4.0})
    assert beyond.p99 == pytest.approx(0.1)  # above the largest bound: that bound, as histogram_quantile
    assert OperationFigures("s", "o").p50 is None


def test_it_shows_pool_use_and_cache_hit_ratios(owner_client) -> None:
    POOL_SIZE.labels("ops-test").set(8)
    POOL_IN_USE.labels("ops-test").set(3)
    html = owner_client.get("/ops/").content.decode()
    assert "<tr><td>ops-test</td><td>8</td><td>3</td><td>0</td></tr>" in html
    assert '<table class="data" id="caches">' in html and "panel-results" in html


def test_it_shows_the_task_queue_depth_and_oldest_task(owner_client) -> None:
    noop.enqueue()
    noop.enqueue()
    html = owner_client.get("/ops/").content.decode()
    assert "<tr><th>tasks waiting</th><td>2</td></tr>" in html
    assert "enqueued " in html


def test_it_shows_the_page_to_staff_only(member_client, outsider_client) -> None:
    assert member_client.get("/ops/").status_code == 403
    assert outsider_client.get("/ops/").status_code == 403


def test_it_uses_no_inline_scripts_or_styles(owner_client) -> None:
    html = owner_client.get("/ops/").content.decode()
    inline_scripts = re.findall(r"<script(?![^>]*\bsrc=)", html)  # a script file is fine (CSP: 'self')
    assert inline_scripts == [] and "<style" not in html and "style=" not in html


def test_it_names_each_failure_kind_in_words(owner_client) -> None:
    operation = f"query-{uuid.uuid4().hex[:6]}"
    record_calls("postgres", operation, [0.1] * 6, ["ok", "query", "query", "error", "unavailable", "timeout"])
    html = owner_client.get("/ops/").content.decode()
    row = html[html.index(f"<td>{operation}</td>") :].split("</tr>")[0]
    assert "2 refused by the database" in row and "1 unexpected errors" in row and "1 source unreachable" in row
    assert "query: 2" not in row


def test_it_charts_each_sources_last_hour_from_the_query_log(owner_client) -> None:
    now = timezone.now()
    entries = [
        QueryLog(trigger="page", source="warehouse", duration_ms=ms, error_kind=kind)
        for ms, kind in [(100, ""), (300, ""), (900, "timeout"), (50, "query")]
    ]
    entries.append(QueryLog(trigger="page", source="warehouse", duration_ms=5, cache_hit=True))  # no database
    QueryLog.objects.bulk_create(entries)
    QueryLog.objects.filter(duration_ms=900).update(created_at=now - timedelta(minutes=40))
    old = QueryLog.objects.create(trigger="page", source="warehouse", duration_ms=1)
    QueryLog.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=2))  # before the hour
    html = owner_client.get("/ops/").content.decode()
    row = html[html.index('<tr data-trend="warehouse">') :].split("</tr>")[0]
    cells = [cell.split(">", 1)[1] for cell in row.split("<td")[1:4]]
    assert [cell.split("</td>")[0] for cell in cells] == ["warehouse", "4", "2"]
    assert row.count("<rect ") == 2  # two five-minute steps had a failure
    assert 'aria-label="2 failed runs of warehouse in the last hour"' in row
    assert "<polyline points=" in row


def test_it_refreshes_itself(owner_client) -> None:
    html = owner_client.get("/ops/").content.decode()
    assert 'data-live data-refresh-seconds="15"' in html and "ops/ops.js" in html
