"""Report pages: the list, the report layout, one panel's fragment, the streamed report, exports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from project.ratelimit import ratelimit, wants_fresh
from project.sources import inflight
from reports import exports, runner
from reports.models import QueryLog, Report
from reports.services import Prepared, find_panel, prepare, visible_report
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
    report = await visible_report(await request.auser(), slug)
    prepared = await prepare(report, request.GET)
    status = 200 if prepared.state.is_valid else 400
    return render(request, "reports/report.html", {"prepared": prepared, "report": report}, status=status)


@require_GET
@ratelimit("fresh", when=wants_fresh)
async def panel_fragment(request: HttpRequest, slug: str, panel_id: int) -> HttpResponse:
    """One panel's result as an HTML fragment; the page requests every panel at once."""
    user = await request.auser()
    report = await visible_report(user, slug)
    panel = find_panel(report, panel_id)
    prepared = await prepare(report, request.GET)
    if not prepared.state.is_valid:
        return render(request, "reports/_filter_errors.html", {"prepared": prepared}, status=400)
    # A browser that goes away cancels this task (Django's ASGI handler), which cancels the query.
    with inflight.labelled(f"report {report.slug}", who=user.get_username()):
        run = await runner.run_panel(panel, prepared.state.params(), fresh=request.GET.get("fresh") == "1")
    await runner.record([run], user_id=user.pk, report_id=report.pk, trigger=QueryLog.Trigger.PAGE)
    context = panel_context(report, panel, run, prepared.state)
    status = run.error["status"] if run.error else 200
    return render(request, "reports/_panel.html", context, status=status)


@require_GET
@ratelimit("report-run")
@ratelimit("fresh", when=wants_fresh)
async def report_stream(request: HttpRequest, slug: str) -> HttpResponse:
    """Every panel over one response, each sent as its query finishes (one JSON line per panel)."""
    user = await request.auser()
    report = await visible_report(user, slug)
    prepared = await prepare(report, request.GET)
    if not prepared.state.is_valid:
        return render(request, "reports/_filter_errors.html", {"prepared": prepared}, status=400)
    lines = _stream_lines(prepared, user, fresh=request.GET.get("fresh") == "1")
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each line on at once
    return response


async def _stream_lines(prepared: Prepared, user: Any, *, fresh: bool) -> AsyncIterator[bytes]:
    report, finished = prepared.report, []
    panels = {panel.pk: panel for panel in prepared.panels}
    try:
        with inflight.labelled(f"report {report.slug}", who=user.get_username()):
            async for run in runner.iter_report(prepared.panels, prepared.state.params(), fresh=fresh):
                finished.append(run)
                html = render_to_string(
                    "reports/_panel.html", panel_context(report, panels[run.panel_id], run, prepared.state)
                )
                status = run.error["status"] if run.error else 200
                yield (
                    json.dumps({"panel": run.panel_id, "status": status, "html": html}, cls=DjangoJSONEncoder).encode()
                    + b"\n"
                )
    finally:
        # Also when the browser left half-way: the finished runs still belong in the log.
        await runner.record(finished, user_id=user.pk, report_id=report.pk, trigger=QueryLog.Trigger.STREAM)


@require_GET
async def export(request: HttpRequest, slug: str, panel_id: int, fmt: str) -> HttpResponse:
    """The panel's full result, streamed from the database in batches."""
    user = await request.auser()
    report = await visible_report(user, slug)
    panel = find_panel(report, panel_id)
    prepared = await prepare(report, request.GET)
    if not prepared.state.is_valid:
        return render(request, "reports/_filter_errors.html", {"prepared": prepared}, status=400)
    return await exports.response(report, panel, prepared.state.params(), fmt, user_id=user.pk)
