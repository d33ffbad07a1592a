"""The fan-out: a report's panels run concurrently, each under its own deadline.

    runs = await run_report(panels, state.params(), fresh=False)
    async for run in iter_report(panels, params): ...       # as each panel finishes

A failure or a timeout in one panel becomes that panel's `PanelRun.error`; it never
cancels or delays another. Results go through `project.cache` ("panel-results"), keyed
on the panel, its final SQL, the bound values and the source, so identical concurrent
requests run the query once, across processes too. Cancelling the caller (a browser that
went away) cancels the running queries on the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NotRequired, TypedDict

from django.conf import settings

from project import cache
from project.db import release_connection
from project.sources import SourceError, SourceTimeout, inflight
from reports.filters import Options
from reports.models import DataSource, Filter, Panel, QueryLog, json_safe, new_reference
from reports.sql import refuse_unless_read_only

logger = logging.getLogger(__name__)

# A panel's deadline covers its query plus any wait for another process's identical run.
DEADLINE_GRACE = 1.0


class PanelError(TypedDict):
    kind: str
    message: str
    status: int
    reference: NotRequired[str]  # what a person quotes; the query log has it with the message


@dataclass
class PanelRun:
    """How one panel's run ended: its rows, or its error, and how long it took."""

    panel_id: int
    title: str
    visualization: str
    source: str
    params: dict[str, Any]
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    row_count: int = 0
    truncated: bool = False
    query_id: str = ""
    query_ms: float = 0.0  # the database round trip of the run that produced the rows
    duration_ms: float = 0.0  # what this request waited, cache included
    cache_hit: bool = False
    stale: bool = False
    stored_at: float | None = None  # unix time the rows were read from the database
    error: PanelError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def age(self) -> float | None:
        return None if self.stored_at is None else max(0.0, time.time() - self.stored_at)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("params")
        data["age_seconds"] = None if self.age is None else round(self.age, 1)
        return data


# Each data source entry's share of its pool, per event loop (a semaphore belongs to a loop).
_shares: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _share(source: DataSource) -> asyncio.Semaphore | None:
    if not source.pool_share:
        return None
    shares = _shares.setdefault(asyncio.get_running_loop(), {})
    return shares.setdefault(source.pk, asyncio.Semaphore(source.pool_share))


def _max_rows() -> int:
    return int(settings.REPORTS_MAX_ROWS)


def panel_params(panel: Panel, params: dict[str, Any]) -> dict[str, Any]:
    """Only the values this panel's SQL uses: other filters do not split its cache entries."""
    from project.sources import placeholder_names

    return {name: params.get(name) for name in placeholder_names(panel.sql)}


def bind(source: DataSource, params: dict[str, Any]) -> dict[str, Any]:
    """Snowflake binds no arrays: a multiple choice travels as JSON text (use PARSE_JSON/ARRAY_CONTAINS)."""
    if source.kind != DataSource.Kind.SNOWFLAKE:
        return params
    import json

    return {key: json.dumps(value) if isinstance(value, list) else value for key, value in params.items()}


async def _query(panel: Panel, params: dict[str, Any]) -> dict[str, Any]:
    source = panel.source
    refuse_unless_read_only(panel.sql, source.dialect, source.connection)
    share = _share(source)
    if share is not None:
        await share.acquire()
    try:
        result = await source.source.execute(
            panel.sql, bind(source, params), timeout=panel.effective_timeout, max_rows=_max_rows()
        )
    finally:
        if share is not None:
            share.release()
    return {
        "columns": result.columns,
        "rows": [list(row) for row in result.rows],
        "row_count": result.row_count,
        "truncated": result.truncated,
        "query_id": result.query_id,
        "query_ms": round(result.elapsed * 1000, 1),
    }


async def run_panel(panel: Panel, params: dict[str, Any], *, fresh: bool = False) -> PanelRun:
    """Run (or reuse) one panel; errors are returned on the run, never raised."""
    await release_connection()
    return await _run_panel(panel, params, fresh=fresh)


async def _run_panel(panel: Panel, params: dict[str, Any], *, fresh: bool = False) -> PanelRun:
    what, who = inflight.current()
    with inflight.labelled(f"{what} / {panel.title}" if what else f"panel {panel.title}", who=who):
        return await _run_panel_labelled(panel, params, fresh=fresh)


async def _run_panel_labelled(panel: Panel, params: dict[str, Any], *, fresh: bool = False) -> PanelRun:
    bound = panel_params(panel, params)
    run = PanelRun(panel.pk, panel.title, panel.visualization, panel.source.connection, bound)
    started = time.perf_counter()
    key = ("panel", panel.pk, panel.sql, sorted(json_safe(bound).items()), panel.source.connection)
    timeout = panel.effective_timeout
    try:
        async with asyncio.timeout(timeout + DEADLINE_GRACE):
            entry = await cache.load(
                "panel-results",
                key,
                lambda: _query(panel, bound),
                ttl=panel.effective_ttl,
                fresh=fresh,
                stale_while_revalidate=panel.stale_while_revalidate,
            )
        for name, value in entry.value.items():
            setattr(run, name, value)
        run.cache_hit, run.stale, run.stored_at = entry.hit, entry.stale, entry.stored_at
    except TimeoutError:
        run.error = _error(SourceTimeout(panel.source.connection, timeout))
    except SourceError as exc:
        run.error = _error(exc)
    except Exception as exc:  # one broken panel must not take the report down
        logger.exception("panel %s failed", panel.pk)
        run.error = {"kind": "error", "message": f"{type(exc).__name__}: {exc}", "status": 500}
    if run.error is not None:
        run.error["reference"] = new_reference()
    run.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    return run


def _error(exc: SourceError) -> PanelError:
    return {"kind": exc.kind, "message": exc.message, "status": exc.http_status}


async def run_report(panels: Sequence[Panel], params: dict[str, Any], *, fresh: bool = False) -> list[PanelRun]:
    """Every panel at once; results in the panels' order."""
    await release_connection()
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_run_panel(panel, params, fresh=fresh)) for panel in panels]
    return [task.result() for task in tasks]


async def iter_report(
    panels: Sequence[Panel], params: dict[str, Any], *, fresh: bool = False
) -> AsyncIterator[PanelRun]:
    """Each panel's run as soon as it finishes. Closing the iterator cancels the rest."""
    done: asyncio.Queue[PanelRun] = asyncio.Queue()
    await release_connection()

    async def run_into_queue(panel: Panel) -> None:
        done.put_nowait(await _run_panel(panel, params, fresh=fresh))

    async with asyncio.TaskGroup() as group:
        for panel in panels:
            group.create_task(run_into_queue(panel))
        for _ in panels:
            yield await done.get()


async def load_options(item: Filter, *, fresh: bool = False) -> tuple[Options, SourceError | None]:
    """A choice filter's options (value, label), cached in "filter-options"."""
    if not item.has_options or item.options_source is None:
        return [], None
    source = item.options_source

    async def loader() -> Options:
        refuse_unless_read_only(item.options_sql, source.dialect, source.connection)
        result = await source.source.execute(item.options_sql, timeout=source.timeout, max_rows=_max_rows())
        return [(str(row[0]), str(row[1] if len(row) > 1 else row[0])) for row in result.rows if row[0] is not None]

    try:
        entry = await cache.load(
            "filter-options", ("options", item.pk, item.options_sql, source.connection), loader, fresh=fresh
        )
    except SourceError as exc:
        return [], exc
    return entry.value, None


async def load_all_options(
    filters: Iterable[Filter], *, fresh: bool = False
) -> dict[str, tuple[Options, SourceError | None]]:
    items = [item for item in filters if item.has_options]
    async with asyncio.TaskGroup() as group:
        tasks = {item.name: group.create_task(load_options(item, fresh=fresh)) for item in items}
    return {name: task.result() for name, task in tasks.items()}


def log_entries(
    runs: Iterable[PanelRun], *, user_id: int | None, report_id: int, trigger: str, query_string: str = ""
) -> list[QueryLog]:
    return [
        QueryLog(
            user_id=user_id,
            report_id=report_id,
            panel_id=run.panel_id,
            trigger=trigger,
            source=run.source,
            parameters=json_safe(run.params),
            duration_ms=run.duration_ms,
            rows=None if run.error else run.row_count,
            cache_hit=run.cache_hit,
            error_kind=run.error["kind"] if run.error else "",
            error=run.error["message"] if run.error else "",
            query_id=run.query_id,
            reference=run.error.get("reference", "") if run.error else "",
            query_string=query_string,
        )
        for run in runs
    ]
