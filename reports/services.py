"""The report-run service: what the pages, the stream, the API and `run_report` share.

    prepared = await open_report(user, slug, request.GET)     # 404/403, filters read; InvalidFilters
    runs = await run_panels(prepared, user, trigger=QueryLog.Trigger.API)
    async for run in stream_panels(prepared, user, trigger=...):  # each as it finishes

Every caller goes through the same steps in the same order: the report as the user may see
it, its filter values checked, the queries labelled with who asked (queries in flight), the
fan-out, and the query log.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404

from project import auth
from project.localcache import AUTH, Generation, LocalCache, Missing
from project.sources import SourceError, inflight
from reports import filters as filtering
from reports import runner
from reports.filters import FilterState, MultiMapping, Options
from reports.models import Filter, Panel, QueryLog, Report, User
from reports.runner import PanelRun, load_all_options

# Every page, fragment, stream and API run reads its report's definition (the report, its
# panels and filters: three queries and about 10 ms of ORM work on a thread), and who may see
# it: both are kept in each process and checked against shared generations on every read
# (project.localcache). REPORTS moves on any change to a definition or its sharing (signals
# below), AUTH on any change to a user or a group membership, so an edit or a lost access
# shows on the next request in every process.
REPORTS = Generation("reports")
# A definition grants nothing (ACCESS does), so while Redis is down a copy a few seconds old
# still serves: a black-holed cache must not cost every fragment its three queries.
DEFINITIONS = LocalCache("report-definitions", ttl=30, max_entries=1000, unverified_ttl=5)
ACCESS = LocalCache("report-access", ttl=30)


async def _stamp(user: User | None = None) -> tuple[int, int] | None:
    """One stamp for both generations (read at once, natively); None: a miss, keep nothing.
    For a user, the auth generation is the one their request read them under
    (project.auth.auth_stamp), not a second read of it."""
    if user is None:
        reports, auth_generation = await asyncio.gather(REPORTS.aget(), AUTH.aget())
    else:
        # In this task, not a gathered one: the request's auth read brought the reports
        # generation with it (project.localcache), so this is no round trip of its own.
        auth_generation = await auth.auth_stamp(user)
        reports = await REPORTS.aget()
    return None if reports is None or auth_generation is None else (reports, auth_generation)


async def _definition(slug: str, stamp: tuple[int, int] | None) -> Report | None:
    """The report with its panels and filters, shared read-only by the requests of this process."""
    report = DEFINITIONS.get(slug, stamp)
    if isinstance(report, Missing):
        report = await Report.objects.for_page().filter(slug=slug).afirst()
        if report is not None:  # unknown slugs are not kept: they would push real reports out
            DEFINITIONS.set(slug, report, stamp)
    return report


async def visible_report(user: User, slug: str) -> Report:
    """The report with its panels and filters: 404 when there is no such report, 403 when the
    user is not in a group it is shared with (page, API and exports alike). The answer of
    `Report.objects.visible_to` is kept per user and report, like the definition."""
    stamp = await _stamp(user)
    report = await _definition(slug, stamp)
    if report is None:
        raise Http404("No such report.")
    key = (report.pk, user.pk)
    allowed = ACCESS.get(key, stamp)
    if isinstance(allowed, Missing):
        allowed = await Report.objects.visible_to(user).filter(pk=report.pk).aexists()
        ACCESS.set(key, allowed, stamp)
    if not allowed:
        raise PermissionDenied("This report is not shared with you; ask its owner for access.")
    return report


def definitions_changed(**kwargs: Any) -> None:
    """A report, panel, filter or data source changed, or a report's sharing: every process
    reads definitions and access again (this one at once, the others after the commit)."""
    users_changed()
    REPORTS.bump()


def users_changed(**kwargs: Any) -> None:
    """A user or a group membership changed: project.auth moves AUTH for every process (after
    the commit); this process forgets its copies at once."""
    DEFINITIONS.clear()
    ACCESS.clear()


def find_panel(report: Report, panel_id: int) -> Panel:
    for panel in report.panels.all():
        if panel.pk == panel_id:
            return panel
    raise Http404("No such panel in this report.")


@dataclass
class Prepared:
    report: Report
    panels: list[Panel]
    filters: list[Filter]
    state: FilterState
    options: dict[str, Options]
    option_errors: dict[str, SourceError]

    @property
    def charts(self) -> bool:
        """Whether a panel draws a chart (the page then loads the chart library)."""
        return any(panel.is_chart for panel in self.panels)

    @property
    def stream(self) -> bool:
        """Above six panels the browser's per-origin connection limit makes separate requests wait in rounds."""
        return len(self.panels) > 6


async def prepare(report: Report, data: MultiMapping, *, fresh_options: bool = False) -> Prepared:
    """Load choice options (cached) and read the filter values; no panel query has run yet."""
    items = list(report.filters.all())
    loaded = await load_all_options(items, fresh=fresh_options)
    options = {name: values for name, (values, error) in loaded.items() if error is None}
    state = filtering.parse(items, data, options)
    return Prepared(
        report=report,
        panels=list(report.panels.all()),
        filters=items,
        state=state,
        options=options,
        option_errors={name: error for name, (_, error) in loaded.items() if error is not None},
    )


class InvalidFilters(Exception):
    """The filter values do not check out: pages answer 400 with the form, the API with the errors."""

    def __init__(self, prepared: Prepared) -> None:
        super().__init__("Check the filter values.")
        self.prepared = prepared
        self.errors = prepared.state.errors


async def open_report(
    user: User | None, slug: str, data: MultiMapping, *, panel_id: int | None = None, check: bool = True
) -> Prepared:
    """The report as `user` may see it (None: a management command, which sees every report),
    with its filter values read; only `panel_id`'s panel when given. With `check`, invalid
    filter values raise InvalidFilters."""
    if user is None:
        if (report := await _definition(slug, await _stamp())) is None:
            raise Http404(f"No report with slug {slug!r}.")
    else:
        report = await visible_report(user, slug)
    prepared = await prepare(report, data)
    if panel_id is not None:
        prepared = replace(prepared, panels=[find_panel(report, panel_id)])
    if check and not prepared.state.is_valid:
        raise InvalidFilters(prepared)
    return prepared


@contextmanager
def _labelled(prepared: Prepared, user: User | None) -> Iterator[None]:
    with inflight.labelled(f"report {prepared.report.slug}", who=user.get_username() if user else "manage.py"):
        yield


def _entries(prepared: Prepared, user: User | None, runs: Sequence[PanelRun], trigger: str) -> list[QueryLog]:
    return runner.log_entries(
        runs,
        user_id=user.pk if user else None,
        report_id=prepared.report.pk,
        trigger=trigger,
        query_string=prepared.state.query_string(),
    )


async def _record(prepared: Prepared, user: User | None, runs: Sequence[PanelRun], trigger: str) -> None:
    await QueryLog.objects.abulk_create(_entries(prepared, user, runs, trigger))


def record(prepared: Prepared, user: User | None, runs: Sequence[PanelRun], trigger: str) -> None:
    """The runs into the query log in one round trip, from sync code (a response's close())."""
    QueryLog.objects.bulk_create(_entries(prepared, user, runs, trigger))


async def run_panels(
    prepared: Prepared, user: User | None, *, trigger: QueryLog.Trigger, fresh: bool = False, logged: bool = True
) -> list[PanelRun]:
    """Every panel of `prepared` at once, logged (unless `logged=False`: the caller calls
    `record` itself, once its response has gone); results in the panels' order. A caller
    that is cancelled (a browser gone) cancels the queries."""
    with _labelled(prepared, user):
        runs = await runner.run_report(prepared.panels, prepared.state.params(), fresh=fresh)
    if logged:
        await _record(prepared, user, runs, trigger)
    return runs


async def stream_panels(
    prepared: Prepared, user: User | None, *, trigger: QueryLog.Trigger, fresh: bool = False
) -> AsyncIterator[PanelRun]:
    """Each panel's run as it finishes; closing the iterator cancels the rest. The finished
    runs are logged also when the reader left half-way."""
    finished: list[PanelRun] = []
    try:
        with _labelled(prepared, user):
            async for run in runner.iter_report(prepared.panels, prepared.state.params(), fresh=fresh):
                finished.append(run)
                yield run
    finally:
        await _record(prepared, user, finished, trigger)


# A tuple, not `int | float | Decimal`: the union is built again on every call, and every
# cell of a shown table asks (3,000 of them in a 500-row panel of 6 columns).
_NUMBERS = (int, float, decimal.Decimal)


def is_number(value: Any) -> bool:
    return isinstance(value, _NUMBERS) and not isinstance(value, bool)


def label(value: Any) -> str:
    """A value as a table cell or chart label: midnight timestamps as dates, floats without noise."""
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return "" if value is None else str(value)


def ago(seconds: float | None) -> str:
    """“just now”, “12 s ago”, “4 min ago”, “2 h ago”."""
    if seconds is None:
        return ""
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"
