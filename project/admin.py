"""The project's admin site, with a Caches page for staff who hold `project.control_cache`.

The cache views are async, so they get their own wrapper instead of `admin_view` (whose
wrapper is sync): anonymous visitors go to the admin login, signed-in users without the
permission get 403, and the views are CSRF-protected and never cached, as admin views are.
Every action is written to the admin's log (LogEntry) with who did it and when.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST

from project import cache
from project.models import CacheControl, TokenIdentity

AsyncView = Callable[..., Coroutine[Any, Any, HttpResponse]]


class FanoutAdminSite(admin.AdminSite):
    site_header = "Fanout administration"
    site_title = "Fanout admin"
    index_title = "Reports, TPAs and caches"
    index_template = "admin/fanout_index.html"

    def get_urls(self) -> list[URLPattern | URLResolver]:
        own = [
            path("caches/", self.cache_view(require_GET(self.caches)), name="caches"),
            path("caches/flush/", self.cache_view(require_POST(self.flush_caches)), name="caches_flush"),
            path(
                "caches/<str:namespace>/<str:action>/",
                self.cache_view(require_POST(self.cache_action)),
                name="cache_action",
            ),
        ]
        return own + super().get_urls()

    def cache_view(self, view: AsyncView) -> AsyncView:
        @functools.wraps(view)
        async def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = await request.auser()
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("admin:login", current_app=self.name))
            if not await CacheControl.auser_can_control(user):
                raise PermissionDenied("Only staff with the cache control permission may see caches.")
            return await view(request, *args, **kwargs)

        return csrf_protect(never_cache(inner))

    async def caches(self, request: HttpRequest) -> HttpResponse:
        rows = await sync_to_async(cache.status, thread_sensitive=False)()
        context = {
            **await sync_to_async(self.each_context)(request),
            "title": "Caches",
            "rows": rows,
            "note": rows[0].note if rows else "",
            "backend": rows[0].backend if rows else "",
            "listing": cache.can_list_keys(),
            "now": time.time(),
        }
        return TemplateResponse(request, "admin/caches.html", context)

    async def cache_action(self, request: HttpRequest, namespace: str, action: str) -> HttpResponse:
        if namespace not in cache.namespaces() or action not in {"invalidate", "warm"}:
            raise Http404("No such cache or action.")
        user = await request.auser()
        if action == "invalidate":
            try:
                generation = await cache.ainvalidate(namespace)
            except cache.CacheUnavailable as exc:
                messages.error(request, f"Could not invalidate {namespace}: {exc}. Nothing changed; try again.")
                return HttpResponseRedirect(reverse("admin:caches", current_app=self.name))
            message = f"Invalidated {namespace}: every process reloads it on its next read (generation {generation})."
        else:
            try:
                started = time.perf_counter()
                await cache.warm(namespace)
            except cache.NoWarmer as exc:
                messages.error(request, f"Cannot warm {namespace}: {exc}.")
                return HttpResponseRedirect(reverse("admin:caches", current_app=self.name))
            except Exception as exc:  # the loader's own failure, shown to the operator
                messages.error(request, f"Warming {namespace} failed: {exc}")
                return HttpResponseRedirect(reverse("admin:caches", current_app=self.name))
            message = f"Warmed {namespace} in {time.perf_counter() - started:.2f} s."
        await CacheControl.arecord(user, namespace, message)
        messages.success(request, message)
        return HttpResponseRedirect(reverse("admin:caches", current_app=self.name))

    async def flush_caches(self, request: HttpRequest) -> HttpResponse:
        try:
            deleted = await sync_to_async(cache.flush_all, thread_sensitive=False)()
        except cache.CacheUnavailable as exc:
            messages.error(request, f"Could not flush the caches: {exc}. Try again once the cache answers.")
            return HttpResponseRedirect(reverse("admin:caches", current_app=self.name))
        message = f"Flushed every cache namespace ({deleted} entries deleted); every process reloads on its next read."
        await CacheControl.arecord(await request.auser(), "all", message, destructive=True)
        messages.success(request, message)
        return HttpResponseRedirect(reverse("admin:caches", current_app=self.name))


@admin.register(TokenIdentity)
class TokenIdentityAdmin(admin.ModelAdmin):
    """Where an administrator links a token identity to an existing (for instance staff) user."""

    list_display = ("subject", "issuer", "user", "created_at")
    search_fields = ("subject", "issuer", "user__username")
    raw_id_fields = ("user",)
    readonly_fields = ("granted_groups", "created_at")
