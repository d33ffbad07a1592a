"""Operations pages: health for load balancers, /metrics for Prometheus, /ops/ for staff."""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from ops.figures import REFRESH_SECONDS, failure_words, queue_figures, source_figures, source_trends
from project import cache
from project.auth import staff_required
from project.metrics import render_latest
from project.models import CacheControl
from project.sources import SourceError, get_source, inflight, source_names
from schedules.history import ops_context as schedule_history


@login_not_required
@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: 200 when the process serves; `?deep=1` also pings each source.

    Staff get a fresh round of pings. Anyone else (a load balancer has no login) gets the
    last round, at most HEALTH_DEEP_MAX_AGE seconds old, made by one request while the others
    wait for it: however often `/health?deep=1` is called, the sources are pinged at most once
    per window per process."""
    if request.GET.get("deep") != "1":
        return JsonResponse({"status": "ok"})
    user = await request.auser()
    staff = bool(user.is_active and user.is_staff)
    checked = await _deep_check(fresh=staff)
    results = checked.results
    healthy = all(result["ok"] for result in results.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "sources": results,
        "age": round(max(0.0, _now() - checked.at), 3),
    }
    return JsonResponse(body, status=200 if healthy else 503)


@dataclass(frozen=True)
class DeepCheck:
    at: float
    results: dict[str, dict[str, object]]


# Per event loop (a future belongs to its loop): the last round of pings, or the one under way.
_deep_checks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[DeepCheck]] = (
    weakref.WeakKeyDictionary()
)


def _now() -> float:
    # One clock for the health window (tests move it instead of sleeping).
    return time.monotonic()


async def _deep_check(*, fresh: bool) -> DeepCheck:
    loop = asyncio.get_running_loop()
    last = _deep_checks.get(loop)
    if last is not None and not fresh:
        if not last.done():
            try:
                return await asyncio.shield(last)
            except asyncio.CancelledError:
                if not last.cancelled():
                    raise  # this request was cancelled, not the one pinging
                # The request that was pinging went away: ping here instead.
        elif _recent(last):
            return last.result()
    future: asyncio.Future[DeepCheck] = loop.create_future()
    _deep_checks[loop] = future
    try:
        results = await _ping_sources()
        checked = DeepCheck(_now(), results)  # its age counts from when the pings answered
    except asyncio.CancelledError:
        future.cancel()
        raise
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: waiters get it through shield
        raise
    future.set_result(checked)
    return checked


def _recent(done: asyncio.Future[DeepCheck]) -> bool:
    if done.cancelled() or done.exception() is not None:
        return False
    return _now() - done.result().at <= settings.HEALTH_DEEP_MAX_AGE


async def _ping_sources() -> dict[str, dict[str, object]]:
    async def check(name: str) -> dict[str, object]:
        try:
            return {"ok": True, "ms": round(await get_source(name).ping() * 1000, 1)}
        except SourceError as exc:
            return {"ok": False, "error": exc.message}

    names = source_names()
    return dict(zip(names, await asyncio.gather(*(check(name) for name in names)), strict=True))


@staff_required
@require_GET
async def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_latest(), content_type="text/plain; version=0.0.4; charset=utf-8")


@staff_required
@require_GET
async def operations(request: HttpRequest) -> HttpResponse:
    calls, pools = await sync_to_async(source_figures, thread_sensitive=False)()
    caches = await sync_to_async(cache.status, thread_sensitive=False)()
    context = {
        "calls": [(row, failure_words(row.failures)) for row in calls],
        "trends": await source_trends(),
        "refresh_seconds": REFRESH_SECONDS,
        "pools": pools,
        "caches": caches,
        "queue": await queue_figures(),
        # running_now() reads the shared cache with sync calls: off the event loop.
        "queries": await sync_to_async(inflight.running_now, thread_sensitive=False)(),
        "queries_every_process": cache.can_list_keys(),
        "multiprocess": bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")),
        # Decided here: a permission check while rendering would query from the event loop.
        "can_control_caches": await CacheControl.auser_can_control(await request.auser()),
        "now": time.time(),
        **await schedule_history(),
    }
    return render(request, "ops/operations.html", context)


@staff_required
@require_POST
async def cancel_query(request: HttpRequest, query_id: str) -> HttpResponse:
    """Cancel a query in flight on its database (whichever process runs it), then back to the page."""
    try:
        running = await inflight.cancel(query_id)
    except SourceError as exc:
        messages.error(request, f"Could not cancel the query: {exc.message}")
    else:
        if running is None:
            messages.info(request, "That query already finished: nothing to cancel.")
        else:
            label = running.what or running.sql[:60]
            messages.success(request, f"Query on {running.source} cancelled: {label}.")
    return HttpResponseRedirect(reverse("operations") + "#queries")
