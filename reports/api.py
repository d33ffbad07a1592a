"""Reports in the JSON API (/api/reports/): the same reports, permissions and runner as the pages.

Filter values are query parameters, exactly as in a report page's URL
(`?tpa=ACME&period_from=2026-01-01&period_to=2026-01-31`); `fresh=1` bypasses the cache.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.http import Http404
from ninja import Router, Schema, Status

from project.api import ApiRequest
from project.ratelimit import acheck
from project.sources import placeholder_names
from reports import runner
from reports.models import QueryLog, Report, json_safe
from reports.services import InvalidFilters, open_report, run_panels, visible_report

router = Router(tags=["reports"])


class ReportOut(Schema):
    slug: str
    title: str
    description: str
    owner: str
    panel_count: int
    updated_at: datetime
    url: str


class FilterOut(Schema):
    name: str
    label: str
    kind: str
    default: str
    required: bool
    parameters: list[str]
    has_options: bool


class PanelOut(Schema):
    id: int
    title: str
    visualization: str
    width: str
    source: str
    timeout_seconds: float
    cache_ttl_seconds: int
    parameters: list[str]


class ReportDetail(Schema):
    slug: str
    title: str
    description: str
    owner: str
    filters: list[FilterOut]
    panels: list[PanelOut]


class PanelError(Schema):
    kind: str
    message: str
    status: int


class PanelRunOut(Schema):
    panel_id: int
    title: str
    visualization: str
    source: str
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    query_id: str
    query_ms: float
    duration_ms: float
    cache_hit: bool
    stale: bool
    age_seconds: float | None
    error: PanelError | None


class ReportRunOut(Schema):
    slug: str
    parameters: dict[str, Any]
    duration_ms: float
    ok: bool
    panels: list[PanelRunOut]


class FilterErrors(Schema):
    detail: str
    errors: dict[str, str]


class Option(Schema):
    value: str
    label: str


def _report_out(report: Report) -> ReportOut:
    return ReportOut(
        slug=report.slug,
        title=report.title,
        description=report.description,
        owner=report.owner.get_username(),
        panel_count=getattr(report, "panel_count", 0),
        updated_at=report.updated_at,
        url=report.get_absolute_url(),
    )


def _filter_errors(errors: dict[str, str]) -> Status[FilterErrors]:
    return Status(400, FilterErrors(detail="Check the filter values.", errors=errors))


@router.get("/", response=list[ReportOut], summary="Reports the signed-in user may see")
async def list_reports(request: ApiRequest) -> list[ReportOut]:
    return [_report_out(report) async for report in Report.objects.visible_to(request.auth).for_list()]


@router.get("/{slug}", response=ReportDetail, summary="A report's definition: filters and panels")
async def report_detail(request: ApiRequest, slug: str) -> ReportDetail:
    report = await visible_report(request.auth, slug)
    return ReportDetail(
        slug=report.slug,
        title=report.title,
        description=report.description,
        owner=report.owner.get_username(),
        filters=[
            FilterOut(
                name=item.name,
                label=item.label,
                kind=item.kind,
                default=item.default,
                required=item.required,
                parameters=item.parameter_names,
                has_options=item.has_options,
            )
            for item in report.filters.all()
        ],
        panels=[
            PanelOut(
                id=panel.pk,
                title=panel.title,
                visualization=panel.visualization,
                width=panel.width,
                source=panel.source.name,
                timeout_seconds=panel.effective_timeout,
                cache_ttl_seconds=panel.effective_ttl,
                parameters=placeholder_names(panel.sql),
            )
            for panel in report.panels.all()
        ],
    )


@router.get("/{slug}/run", response={200: ReportRunOut, 400: FilterErrors}, summary="Run every panel at once")
async def run_report(request: ApiRequest, slug: str, fresh: bool = False) -> Any:
    """Each panel's rows or error, with timings; one panel failing or timing out leaves the others intact."""
    await acheck(request, "report-run")
    if fresh:
        await acheck(request, "fresh")
    try:
        prepared = await open_report(request.auth, slug, request.GET)
    except InvalidFilters as errors:
        return _filter_errors(errors.errors)
    started = time.perf_counter()
    runs = await run_panels(prepared, request.auth, trigger=QueryLog.Trigger.API, fresh=fresh)
    return ReportRunOut(
        slug=prepared.report.slug,
        parameters=json_safe(prepared.state.params()),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        ok=all(run.ok for run in runs),
        panels=[PanelRunOut(**run.as_dict()) for run in runs],
    )


@router.get(
    "/{slug}/panels/{panel_id}/run",
    response={
        200: PanelRunOut,
        400: FilterErrors,
        422: PanelRunOut,
        500: PanelRunOut,
        503: PanelRunOut,
        504: PanelRunOut,
    },
    summary="Run one panel",
)
async def run_panel(request: ApiRequest, slug: str, panel_id: int, fresh: bool = False) -> Any:
    """The panel's result; a failed run answers with its error's status (504 for a timeout)."""
    if fresh:
        await acheck(request, "fresh")
    try:
        prepared = await open_report(request.auth, slug, request.GET, panel_id=panel_id)
    except InvalidFilters as errors:
        return _filter_errors(errors.errors)
    [run] = await run_panels(prepared, request.auth, trigger=QueryLog.Trigger.API, fresh=fresh)
    return Status(run.error["status"] if run.error else 200, PanelRunOut(**run.as_dict()))


@router.get("/{slug}/filters/{name}/options", response=list[Option], summary="A choice filter's options")
async def filter_options(request: ApiRequest, slug: str, name: str, fresh: bool = False) -> Any:
    if fresh:
        await acheck(request, "fresh")
    report = await visible_report(request.auth, slug)
    item = next((item for item in report.filters.all() if item.name == name), None)
    if item is None:
        raise Http404("No such filter in this report.")
    options, error = await runner.load_options(item, fresh=fresh)
    if error is not None:
        raise error  # the API's SourceError handler answers with its status
    return [Option(value=value, label=label) for value, label in options]
