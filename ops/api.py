"""The operations API: cache status and control, queries in flight (staff only)."""

from __future__ import annotations

import dataclasses
from typing import Any

from asgiref.sync import sync_to_async
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from project import cache
from project.api import ApiRequest
from project.models import CacheControl
from project.sources import inflight

router = Router()


async def _require_cache_control(request: ApiRequest) -> None:
    if not await CacheControl.auser_can_control(request.auth):
        raise HttpError(403, "Only staff with the cache control permission may do this.")


def _known(namespace: str) -> str:
    if namespace not in cache.namespaces():
        raise HttpError(404, f"No cache namespace {namespace!r}; known: {', '.join(cache.namespaces())}.")
    return namespace


@router.get("/cache", tags=["cache"], summary="Every cache namespace: TTL, keys, hits, misses, ages, last load")
async def cache_status(request: ApiRequest) -> dict[str, Any]:
    await _require_cache_control(request)
    rows = await sync_to_async(cache.status, thread_sensitive=False)()
    return {"namespaces": [row.as_dict() for row in rows]}


@router.post("/cache/{namespace}/invalidate", tags=["cache"], summary="Make every process reload the namespace")
async def cache_invalidate(request: ApiRequest, namespace: str) -> dict[str, Any]:
    await _require_cache_control(request)
    generation = await cache.ainvalidate(_known(namespace))
    await CacheControl.arecord(request.auth, namespace, f"Invalidated through the API (generation {generation}).")
    return {"namespace": namespace, "generation": generation}


# --- Queries in flight -----------------------------------------------------------------------


class Detail(Schema):
    detail: str


class QueryOut(Schema):
    id: str
    source: str
    kind: str
    sql: str
    what: str
    who: str
    started_at: float
    elapsed: float
    deadline: float
    process: int
    backend_pid: int | None
    request_id: str | None


def _require_staff(request: ApiRequest) -> None:
    user = request.auth
    if not (user.is_active and user.is_staff):
        raise HttpError(403, "Only staff may see or cancel queries in flight.")


def _query_out(running: inflight.Running) -> dict[str, Any]:
    return {**dataclasses.asdict(running), "elapsed": round(running.elapsed, 3)}


@router.get("/queries", response=list[QueryOut], tags=["operations"], summary="Queries running now on every source")
async def queries(request: ApiRequest) -> list[dict[str, Any]]:
    _require_staff(request)
    return [_query_out(running) for running in await sync_to_async(inflight.running_now, thread_sensitive=False)()]


@router.post(
    "/queries/{query_id}/cancel",
    response={200: QueryOut, 404: Detail},
    tags=["operations"],
    summary="Cancel a query on its database, whichever process runs it",
)
async def cancel_query(request: ApiRequest, query_id: str) -> Status:
    _require_staff(request)
    if (running := await inflight.cancel(query_id)) is None:
        return Status(404, {"detail": f"Query {query_id} is not running: it already finished."})
    return Status(200, _query_out(running))
