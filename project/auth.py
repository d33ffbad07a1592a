"""Access decorators for views; each works on sync and async views alike."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


def staff_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """403 for signed-in users who are not staff (anonymous users never get this far:
    LoginRequiredMiddleware sends them to the login page first)."""

    def check(request: HttpRequest) -> None:
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("Only staff may see this page.")

    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            await request.auser()
            check(request)
            return await view(request, *args, **kwargs)

        return async_wrapper

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        check(request)
        return view(request, *args, **kwargs)

    return wrapper
