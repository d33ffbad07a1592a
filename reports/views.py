"""Report pages: the list, the report page (streamed), one panel's fragment, the panel stream, exports."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from project.navigation import without_navigation
from project.ratelimit import ratelimit, wants_fresh
from reports import exports
from reports.models import Favourite, QueryLog, Report, Tag
from reports.runner import PanelRun
from reports.services import (
    InvalidFilters,
    Prepared,
    open_report,
    record,
    run_panels,
    stream_panels,
    visible_report,
)
from reports.templatetags.reports import panel_context

logger = logging.getLogger(__name__)


@require_GET
async def home(request: HttpRequest) -> HttpResponse:
    """The landing page: where to go next."""
    return render(request, "home.html")


@require_GET
async def report_list(request: HttpRequest) -> HttpResponse:
    """The reports shared with the user, favourites first; search, a tag, and their recent runs."""
    user = await request.auser()
    text, tag = request.GET.get("q", "").strip()[:100], request.GET.get("tag", "").strip()[:50]
    visible = Report.objects.visible_to(user)
    reports = visible.for_list().with_favourites(user)
    if text:
        reports = reports.search(text)
    if tag:
        reports = reports.filter(tags__slug=tag)
    context = {
        "reports": [report async for report in reports],
        "tags": [item async for item in Tag.objects.filter(reports__in=visible.values("pk")).distinct()],
        "recent": [row async for row in QueryLog.objects.recent_runs(user)],
        "q": text,
        "tag": tag,
    }
    return render(request, "reports/list.html", context)


# Where the finished panels go in the page: the layout before it is sent at once.
ARRIVALS = mark_safe("<!-- panels arrive here as their queries finish -->")


@require_GET
@ratelimit("report-run")
async def report_page(request: HttpRequest, slug: str) -> HttpResponseBase:
    """The layout at once, then each panel in the same response as its query finishes
    (out-of-order: the page's script moves each into its slot)."""
    user = await request.auser()
    prepared = await open_report(user, slug, request.GET, check=False)
    context = {"prepared": prepared, "report": prepared.report}
    if not (prepared.state.is_valid and prepared.panels):
        status = 200 if prepared.state.is_valid else 400
        return render(request, "reports/report.html", context, status=status)
    runs: AsyncIterator[PanelRun] = stream_panels(prepared, user, trigger=QueryLog.Trigger.PAGE)
    if isinstance(request, ASGIRequest):
        # The queries start now, while the layout renders and travels (10-40 ms at 16
        # panels on a busy 2-core machine). Only under ASGI: elsewhere (the sync test
        # client) the view's event loop ends when it returns, and the response is read on another.
        runs = Started(runs)
        await asyncio.sleep(0)  # let it take its first step (handing back the connection) before the render
    try:
        # Rendered here, not in the iterator: the session, messages and CSRF cookie the
        # layout uses must be settled before the middleware sees the response.
        page = render_to_string("reports/report.html", {**context, "arrivals": ARRIVALS}, request)
    except BaseException:
        if isinstance(runs, Started):
            runs.cancel()
        raise
    head, tail = page.split(ARRIVALS)
    return _streaming(_page_chunks(head, tail, prepared, runs, user), "text/html; charset=utf-8")


async def _page_chunks(
    head: str, tail: str, prepared: Prepared, runs: AsyncIterator[PanelRun], user: Any
) -> AsyncIterator[bytes]:
    panels = {panel.pk: panel for panel in prepared.panels}
    left = len(panels)
    try:
        yield head.encode()
        async for run in runs:
            context = panel_context(prepared.report, panels[run.panel_id], run, prepared.state, user=user)
            arrival = render_to_string("reports/report.html#arrival", context)
            left -= 1
            # With the last panel the page is complete; the query log is written after it.
            yield (arrival + tail if left == 0 else arrival).encode()
    finally:
        if isinstance(runs, Started):
            runs.cancel()  # the browser went away: the queries still running stop


class Started[T]:
    """An async iterator run from now on in a task of its own, its items kept for the reader:
    the work starts before the reader is ready for it. `cancel()` stops it."""

    def __init__(self, iterator: AsyncIterator[T]) -> None:
        self._items: asyncio.Queue[tuple[T] | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump(iterator))

    async def _pump(self, iterator: AsyncIterator[T]) -> None:
        try:
            async for item in iterator:
                self._items.put_nowait((item,))
        finally:
            self._items.put_nowait(None)

    def __aiter__(self) -> Started[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._items.get()
        if item is None:
            await self._task  # the iterator's own error, if it failed
            raise StopAsyncIteration
        return item[0]

    def cancel(self) -> None:
        self._task.cancel()


def _streaming(chunks: AsyncIterator[bytes], content_type: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each part on at once
    return response


def _filter_errors(request: HttpRequest, errors: InvalidFilters) -> HttpResponse:
    return render(request, "reports/_filter_errors.html", {"prepared": errors.prepared}, status=400)


@without_navigation
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
    trigger = QueryLog.Trigger.PAGE
    runs = await run_panels(prepared, user, trigger=trigger, fresh=wants_fresh(request), logged=False)
    context = panel_context(prepared.report, prepared.panels[0], runs[0], prepared.state, user=user)
    html = render_to_string("reports/_panel.html", context, request)
    status = runs[0].error["status"] if runs[0].error else 200
    return LoggedResponse(html, status=status, log=functools.partial(record, prepared, user, runs, trigger))


class LoggedResponse(HttpResponse):
    """A response that writes its query log once it has gone: Django closes every response
    after its last byte is sent (under ASGI on the request's thread), so the browser never
    waits for the insert."""

    def __init__(self, content: str, *, status: int, log: Callable[[], None]) -> None:
        super().__init__(content, status=status)
        self._log = log

    def close(self) -> None:
        try:
            self._log()
        except Exception:  # the page was served; say so loudly, a query log line is missing
            logger.exception("query log not written")
        super().close()


@without_navigation
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
    return _streaming(_stream_lines(prepared, user, fresh=wants_fresh(request)), "application/x-ndjson")


async def _stream_lines(prepared: Prepared, user: Any, *, fresh: bool) -> AsyncIterator[bytes]:
    panels = {panel.pk: panel for panel in prepared.panels}
    async for run in stream_panels(prepared, user, trigger=QueryLog.Trigger.STREAM, fresh=fresh):
        context = panel_context(prepared.report, panels[run.panel_id], run, prepared.state, user=user)
        html = render_to_string("reports/_panel.html", context)
        line = {"panel": run.panel_id, "status": run.error["status"] if run.error else 200, "html": html}
        yield json.dumps(line, cls=DjangoJSONEncoder).encode() + b"\n"


@without_navigation
@require_GET
@ratelimit("export")
async def export(request: HttpRequest, slug: str, panel_id: int, fmt: str) -> HttpResponseBase:
    """The panel's full result, streamed from the database in batches."""
    user = await request.auser()
    try:
        prepared = await open_report(user, slug, request.GET, panel_id=panel_id)
    except InvalidFilters as errors:
        return _filter_errors(request, errors)
    return await exports.response(prepared.report, prepared.panels[0], prepared.state.params(), fmt, user_id=user.pk)


@require_POST
async def favourite(request: HttpRequest, slug: str) -> HttpResponse:
    """Mark or unmark a favourite; the form says which (`on=1`/`on=0`), so a double click is harmless."""
    user = await request.auser()
    report = await visible_report(user, slug)
    assert user.pk is not None  # signed in: LoginRequiredMiddleware
    if request.POST.get("on") == "1":
        with contextlib.suppress(IntegrityError):  # the same click, twice at once: it is marked either way
            await Favourite.objects.aget_or_create(user_id=user.pk, report=report)
    else:
        await Favourite.objects.filter(user_id=user.pk, report=report).adelete()
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        target = reverse("reports:list")
    return HttpResponseRedirect(target)
