"""The JSON API: one NinjaAPI (OpenAPI document at /api/openapi.json, docs at /api/docs).

project/urls.py adds each app's router (`urls()`). Authentication is a bearer token (OAuth 2.0 introspection,
project.tokens) or the Django session (with CSRF on unsafe methods); API clients get 401
instead of the login redirect pages get.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError

from project import cache
from project.auth import group_names, session_auth
from project.ratelimit import RateLimited
from project.sources import SourceError
from project.tokens import AuthServerUnavailable, bearer


# What any operation may answer besides its own documented results: the shared error
# handlers below (and django-ninja's validation and authentication) produce these.
class ApiRequest(HttpRequest):
    """The request an API operation gets: django-ninja sets `auth` to the user that the
    bearer token or the session belongs to (the operation runs only when there is one)."""

    auth: User


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
                # django-ninja keys an operation's own answers by int (404), JSON by text ("404"):
                # normalise first, or an answer the operation declares is written twice.
                responses = {str(status): answer for status, answer in operation.get("responses", {}).items()}
                operation["responses"] = responses
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
    auth=[bearer, session_auth],
    urls_namespace="api",
)


@api.exception_handler(PermissionDenied)
def permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "You may not do this."}, status=403)


@api.exception_handler(SourceError)
def source_error(request: HttpRequest, exc: SourceError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.message, "error": exc.as_dict()}, status=exc.http_status)


@api.exception_handler(AuthenticationError)
def authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    # RFC 6750 section 3: a 401 says how to authenticate.
    response = api.create_response(request, {"detail": "Sign in, or send a bearer token."}, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(cache.CacheUnavailable)
def cache_unavailable(request: HttpRequest, exc: cache.CacheUnavailable) -> HttpResponse:
    return api.create_response(request, {"detail": f"{exc}. Nothing changed; try again."}, status=503)


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
async def me(request: ApiRequest) -> dict[str, Any]:
    user = request.auth
    return {"username": user.get_username(), "is_staff": user.is_staff, "groups": await group_names(user)}


def urls(routers: dict[str, Router]) -> tuple[list[URLPattern | URLResolver], str, str]:
    """api.urls with each app's router under its prefix, and Django's LoginRequiredMiddleware
    told to let the API answer 401 itself."""
    for prefix, router in routers.items():
        api.add_router(prefix, router)
    patterns, app_name, namespace = api.urls

    def mark(items: list[URLPattern | URLResolver]) -> None:
        for item in items:
            if isinstance(item, URLResolver):
                mark(item.url_patterns)
            else:
                item.callback.login_required = False  # type: ignore[attr-defined]

    mark(patterns)
    return patterns, app_name, namespace
