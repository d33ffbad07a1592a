"""Report pages: the list, the report layout, one panel's fragment, the streamed report, exports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from project.ratelimit import ratelimit, wants_fresh
from reports import exports
from reports.models import QueryLog, Report
from reports.services import InvalidFilters, Prepared, open_report, run_panels, stream_panels
from reports.templatetags.reports import panel_context


@require_GET
async def home(request: HttpRequest) -> HttpResponse:
    """The landing page: where to go next."""
    return render(request, "home.html")


@require_GET
async def report_list(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    reports = [report async for report in Report.objects.visible_to(user).for_list()]
    return render(request, "reports/list.html", {"reports": reports})


@require_GET
async def report_page(request: HttpRequest, slug: str) -> HttpResponse:
    prepared = await open_report(await request.auser(), slug, request.GET, check=False)
    status = 200 if prepared.state.is_valid else 400
    return render(request, "reports/report.html", {"prepared": prepared, "report": prepared.report}, status=status)


def _filter_errors(request: HttpRequest, errors: InvalidFilters) -> HttpResponse:
    return render(request, "reports/_filter_errors.html", {"prepared": errors.prepared}, status=400)


@require_GET
@ratelimit("fresh", when=wants_fresh)
async def panel_fragment(request: HttpRequest, slug: str, panel_id: int) -> HttpResponse:
    """One panel's result as an HTML fragment; the page requests every panel at once."""
    user = await request.auser()
    try:
        prepared = await open_report(user, slug, request.GET, panel_id=panel_id)
    except InvalidFilters as errors:
        return _filter_errors(request, errors)
    # A browser that goes away cancels this task (Django's ASGI handler), which cancels the query.
    [run] = await run_panels(prepared, user, trigger=QueryLog.Trigger.PAGE, fresh=wants_fresh(request))
    context = panel_context(prepared.report, prepared.panels[0], run, prepared.state)
    return render(request, "reports/_panel.html", context, status=run.error["status"] if run.error else 200)


@require_GET
@ratelimit("report-run")
@ratelimit("fresh", when=wants_fresh)
async def report_stream(request: HttpRequest, slug: str) -> HttpResponseBase:
    """Every panel over one response, each sent as its query finishes (one JSON line per panel)."""
    user = await request.auser()
    try:
        prepared = await open_report(user, slug, request.GET)
    except InvalidFilters as errors:
        return _filter_errors(request, errors)
    lines = _stream_lines(prepared, user, fresh=wants_fresh(request))
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each line on at once
    return response


async def _stream_lines(prepared: Prepared, user: Any, *, fresh: bool) -> AsyncIterator[bytes]:
    panels = {panel.pk: panel for panel in prepared.panels}
    async for run in stream_panels(prepared, user, trigger=QueryLog.Trigger.STREAM, fresh=fresh):
        context = panel_context(prepared.report, panels[run.panel_id], run, prepared.state)
        html = render_to_string("reports/_panel.html", context)
        line = {"panel": run.panel_id, "status": run.error["status"] if run.error else 200, "html": html}
        yield json.dumps(line, cls=DjangoJSONEncoder).encode() + b"\n"


@require_GET
async def export(request: HttpRequest, slug: str, panel_id: int, fmt: str) -> HttpResponseBase:
    """The panel's full result, streamed from the database in batches."""
    user = await request.auser()
    try:
        prepared = await open_report(user, slug, request.GET, panel_id=panel_id)
    except InvalidFilters as errors:
        return _filter_errors(request, errors)
    return await exports.response(prepared.report, prepared.panels[0], prepared.state.params(), fmt, user_id=user.pk)
