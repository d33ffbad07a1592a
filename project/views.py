from __future__ import annotations

import asyncio

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from project.auth import staff_required
from project.metrics import render_latest
from project.sources import SourceError, get_source, source_names


async def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


@login_not_required
@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: 200 when the process serves; `?deep=1` also pings each source."""
    if request.GET.get("deep") != "1":
        return JsonResponse({"status": "ok"})

    async def check(name: str) -> dict[str, object]:
        try:
            return {"ok": True, "ms": round(await get_source(name).ping() * 1000, 1)}
        except SourceError as exc:
            return {"ok": False, "error": exc.message}

    names = source_names()
    results = dict(zip(names, await asyncio.gather(*(check(name) for name in names)), strict=True))
    healthy = all(result["ok"] for result in results.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "sources": results}, status=200 if healthy else 503)


@staff_required
@require_GET
async def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_latest(), content_type="text/plain; version=0.0.4; charset=utf-8")
