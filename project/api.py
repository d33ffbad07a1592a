"""The JSON API: one NinjaAPI (OpenAPI document at /api/openapi.json, docs at /api/docs).

Each app adds its router here. Authentication is the Django session (with CSRF on
unsafe methods); API clients get 401 instead of the login redirect pages get.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI
from ninja.security import django_auth

from project.sources import SourceError

api = NinjaAPI(
    title="Fanout API",
    version="1",
    description="Reports whose panels run in parallel, and the TPA pipeline.",
    auth=django_auth,
    urls_namespace="api",
)


@api.exception_handler(SourceError)
def source_error(request: HttpRequest, exc: SourceError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.message, "error": exc.as_dict()}, status=exc.http_status)


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
