"""The JSON API: one NinjaAPI (OpenAPI document at /api/openapi.json, docs at /api/docs).

Each app adds its router here. Authentication is a bearer token (OAuth 2.0 introspection,
project.tokens) or the Django session (with CSRF on unsafe methods); API clients get 401
instead of the login redirect pages get.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI, Schema, Status
from ninja.errors import HttpError
from ninja.security import django_auth

from project import cache
from project.models import CacheControl
from project.ratelimit import RateLimited, acheck, wants_fresh
from project.sources import SourceError, inflight
from project.tokens import AuthServerUnavailable, bearer

# What any operation may answer besides its own documented results: the shared error
# handlers below (and django-ninja's validation and authentication) produce these.
COMMON_ERRORS = {
    "400": "The request's values are wrong (the message says which).",
    "401": "No valid session or bearer token.",
    "403": "Signed in, but not allowed to do this.",
    "404": "No such object (or not one you may see).",
    "409": "Conflicts with the object's state (for instance a run already in progress).",
    "422": "The request, or the database, refused the statement.",
    "429": "Past the rate limit: retry after the Retry-After seconds.",
    "503": "A data source or the auth server is unavailable.",
    "504": "A data source did not answer within its deadline.",
}


class FanoutAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None) -> Any:
        """The generated document, with the error answers every operation can give declared,
        so clients (and schemathesis) know them."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        error = {"type": "object", "properties": {"detail": {"title": "Detail"}}, "required": ["detail"]}
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = error
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in COMMON_ERRORS.items():
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                        },
                    )
        return schema


api = FanoutAPI(
    title="Fanout API",
    version="1",
    description="Reports whose panels run in parallel, and the TPA pipeline.",
    auth=[bearer, django_auth],
    urls_namespace="api",
)


@api.exception_handler(PermissionDenied)
def permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "You may not do this."}, status=403)


@api.exception_handler(SourceError)
def source_error(request: HttpRequest, exc: SourceError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.message, "error": exc.as_dict()}, status=exc.http_status)


@api.exception_handler(AuthServerUnavailable)
def auth_server_unavailable(request: HttpRequest, exc: AuthServerUnavailable) -> HttpResponse:
    return api.create_response(request, {"detail": exc.message}, status=exc.http_status)


@api.exception_handler(RateLimited)
def rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = api.create_response(request, {"detail": exc.message, "retry_after": exc.retry_after}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(cache.NoWarmer)
def no_warmer(request: HttpRequest, exc: cache.NoWarmer) -> HttpResponse:
    return api.create_response(request, {"detail": f"{exc}; the app that owns it has not loaded."}, status=503)


# --- Who am I, caches, master data -------------------------------------------------------


@api.get("/me", tags=["account"], summary="The signed-in user (session or bearer token)")
async def me(request: HttpRequest) -> dict[str, Any]:
    user = request.auth  # type: ignore[attr-defined]
    groups = [name async for name in user.groups.order_by("name").values_list("name", flat=True)]
    return {"username": user.get_username(), "is_staff": user.is_staff, "groups": groups}


async def _require_cache_control(request: HttpRequest) -> None:
    if not await CacheControl.auser_can_control(request.auth):  # type: ignore[attr-defined]
        raise HttpError(403, "Only staff with the cache control permission may do this.")


def _known(namespace: str) -> str:
    if namespace not in cache.namespaces():
        raise HttpError(404, f"No cache namespace {namespace!r}; known: {', '.join(cache.namespaces())}.")
    return namespace


@api.get("/cache", tags=["cache"], summary="Every cache namespace: TTL, keys, hits, misses, ages, last load")
async def cache_status(request: HttpRequest) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    await _require_cache_control(request)
    rows = await sync_to_async(cache.status, thread_sensitive=False)()
    return {"namespaces": [row.as_dict() for row in rows]}


@api.post("/cache/{namespace}/invalidate", tags=["cache"], summary="Make every process reload the namespace")
async def cache_invalidate(request: HttpRequest, namespace: str) -> dict[str, Any]:
    await _require_cache_control(request)
    generation = await cache.ainvalidate(_known(namespace))
    await CacheControl.arecord(request.auth, namespace, f"Invalidated through the API (generation {generation}).")  # type: ignore[attr-defined]
    return {"namespace": namespace, "generation": generation}


@api.get("/master-data", tags=["cache"], summary="Master data, cached; ?fresh=1 reloads it (rate-limited)")
async def master_data(request: HttpRequest) -> dict[str, Any]:
    fresh = wants_fresh(request)
    if fresh:
        await acheck(request, "fresh")
    entry = await cache.load_registered("master-data", fresh=fresh)
    return {"data": _plain(entry.value), "cached": entry.hit, "age": round(entry.age, 3), "loaded_at": entry.stored_at}


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


def _require_staff(request: HttpRequest) -> None:
    user = request.auth  # type: ignore[attr-defined]
    if not (user.is_active and user.is_staff):
        raise HttpError(403, "Only staff may see or cancel queries in flight.")


def _query_out(running: inflight.Running) -> dict[str, Any]:
    return {**dataclasses.asdict(running), "elapsed": round(running.elapsed, 3)}


@api.get("/queries", response=list[QueryOut], tags=["operations"], summary="Queries running now on every source")
async def queries(request: HttpRequest) -> list[dict[str, Any]]:
    from asgiref.sync import sync_to_async

    _require_staff(request)
    return [_query_out(running) for running in await sync_to_async(inflight.running_now, thread_sensitive=False)()]


@api.post(
    "/queries/{query_id}/cancel",
    response={200: QueryOut, 404: Detail},
    tags=["operations"],
    summary="Cancel a query on its database, whichever process runs it",
)
async def cancel_query(request: HttpRequest, query_id: str) -> Status:
    _require_staff(request)
    if (running := await inflight.cancel(query_id)) is None:
        return Status(404, {"detail": f"Query {query_id} is not running: it already finished."})
    return Status(200, _query_out(running))


def _plain(value: Any) -> Any:
    """Cached values are often frozen dataclasses, which the JSON renderer does not know."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _routers() -> None:
    # Imported here so apps can import `api` without a cycle.
    from importlib import import_module

    for module in ("reports.api", "tpa.api"):
        try:
            router = import_module(module).router
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        api.add_router(f"/{module.split('.')[0]}", router)


def urls() -> tuple[list[URLPattern | URLResolver], str, str]:
    """api.urls, with Django's LoginRequiredMiddleware told to let the API answer 401 itself."""
    _routers()
    patterns, app_name, namespace = api.urls

    def mark(items: list[URLPattern | URLResolver]) -> None:
        for item in items:
            if isinstance(item, URLResolver):
                mark(item.url_patterns)
            else:
                item.callback.login_required = False  # type: ignore[attr-defined]

    mark(patterns)
    return patterns, app_name, namespace
