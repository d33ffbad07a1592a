"""One navigation for the whole site, showing only the sections the user may open.

The links are worked out before the view runs (NavigationMiddleware awaits the permission
check, so no template touches the database from the event loop) and handed to every
template by the `navigation` context processor. Views that answer fragments or data mark
themselves with `without_navigation` and skip the check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Permission
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin

from project.middleware import InlineMixin

TPA_PERMISSIONS = ("operate_tpa", "view_tpa")


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    section: str  # the path prefix whose pages it leads to


def links_for(user: Any, tpa_access: int) -> list[Link]:
    if not (user.is_authenticated and user.is_active):
        return []
    links = [Link("Reports", reverse("reports:list"), "/reports/")]
    if tpa_access:
        links += [
            Link("TPA pipeline", reverse("tpa:index"), "/tpa/"),
            Link("Processing queue", reverse("tpa:queue"), "/tpa/queue/"),
        ]
    if user.is_staff:
        links += [Link("Operations", reverse("operations"), "/ops/"), Link("Admin", reverse("admin:index"), "/admin/")]
    return links


async def alinks(user: Any) -> list[Link]:
    if not (user.is_authenticated and user.is_active):
        return []
    if user.is_staff or user.is_superuser:
        return links_for(user, 1)
    # One query for every page: does the user hold a TPA permission, directly or by a group?
    # (ModelBackend's semantics, which is the only backend; tpa.models.access_for decides the rest.)
    held = Permission.objects.filter(content_type__app_label="tpa", codename__in=TPA_PERMISSIONS).filter(
        Q(user=user) | Q(group__user=user)
    )
    return links_for(user, int(await held.aexists()))


def _sync_links(user: Any) -> list[Link]:
    """For pages rendered on a thread (Django's error handlers), where the ORM may be used."""
    if not (user.is_authenticated and user.is_active):
        return []
    access = user.is_staff or user.has_perm("tpa.operate_tpa") or user.has_perm("tpa.view_tpa")
    return links_for(user, int(access))


def without_navigation(view: Callable[..., Any]) -> Callable[..., Any]:
    """For views that answer a fragment, a stream or a download: no navigation to work out."""
    view.site_navigation = False  # type: ignore[attr-defined]
    return view


class NavigationMiddleware(InlineMixin, MiddlewareMixin):
    """Works out `request.site_links` before the view runs (after LoginRequiredMiddleware)."""

    async def process_view(self, request: HttpRequest, callback: Any, args: Any, kwargs: Any) -> None:
        if getattr(callback, "site_navigation", True) and not request.path.startswith("/api/"):
            request.site_links = await alinks(await request.auser())  # type: ignore[attr-defined]


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Context processor: `site_links`, each with `current` set for the page's section."""
    links = getattr(request, "site_links", None)
    if links is None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            links = _sync_links(request.user)  # an error page, rendered on a thread
        else:
            links = []
    path = request.path
    current = max((link.section for link in links if path.startswith(link.section)), key=len, default="")
    return {"site_links": [(link, link.section == current) for link in links]}
