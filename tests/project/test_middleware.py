"""project.middleware runs Django's own middleware on the event loop by overriding Django's
private `MiddlewareMixin.__acall__`. These tests fail loudly when a Django upgrade changes
what that override relies on, so the speed-up never silently skips or duplicates a hook."""

from __future__ import annotations

import asyncio
import inspect

import django
import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string

from project import middleware

HOOKS = ("process_request", "process_view", "process_response", "process_exception", "process_template_response")

# The hooks each wrapped Django middleware had when project.middleware was written
# (Django 6.1). InlineMixin.__acall__ runs process_request and process_response; the
# handler calls process_view (async here where Django's may do I/O). A hook Django adds
# (process_exception, say) or a native __acall__ of its own must be reviewed there first.
EXPECTED_HOOKS = {
    "SecurityMiddleware": {"process_request", "process_response"},
    "ContentSecurityPolicyMiddleware": {"process_request", "process_response"},
    "SessionMiddleware": {"process_request", "process_response"},
    "CommonMiddleware": {"process_request", "process_response"},
    "CsrfViewMiddleware": {"process_request", "process_view", "process_response"},
    "AuthenticationMiddleware": {"process_request"},
    "LoginRequiredMiddleware": {"process_view"},
    "MessageMiddleware": {"process_request", "process_response"},
    "XFrameOptionsMiddleware": {"process_response"},
    "LocaleMiddleware": {"process_request", "process_response"},
}


def fast_classes() -> list[type]:
    classes = [value for value in vars(middleware).values() if isinstance(value, type)]
    return [cls for cls in classes if issubclass(cls, middleware.InlineMixin) and cls is not middleware.InlineMixin]


def django_base(cls: type) -> type:
    [base] = [base for base in cls.__bases__ if base is not middleware.InlineMixin]
    assert base.__module__.startswith("django."), cls
    return base


def test_it_wraps_every_django_middleware_in_the_settings():
    for path in settings.MIDDLEWARE:
        cls = import_string(path)
        assert not (issubclass(cls, MiddlewareMixin) and cls.__module__.startswith("django.")), (
            f"{path} runs every hook on a thread; use its project.middleware wrapper"
        )
    assert {cls.__name__ for cls in fast_classes()} == set(EXPECTED_HOOKS)


@pytest.mark.parametrize("name", sorted(EXPECTED_HOOKS))
def test_it_fails_when_django_changes_the_hooks_of_a_wrapped_middleware(name):
    base = django_base(getattr(middleware, name))
    hooks = {hook for hook in HOOKS if callable(getattr(base, hook, None))}
    assert hooks == EXPECTED_HOOKS[name], (
        f"Django {django.get_version()} changed the hooks of {base.__module__}.{name}: "
        f"{sorted(hooks)} (expected {sorted(EXPECTED_HOOKS[name])}); review project.middleware before upgrading"
    )
    for own in ("__call__", "__acall__"):
        assert own not in vars(base), (
            f"Django {django.get_version()} gave {name} its own {own}: project.middleware would override it"
        )


def test_it_fails_when_django_stops_dispatching_async_requests_to_acall():
    # What InlineMixin overrides: MiddlewareMixin.__call__ hands async requests to __acall__.
    assert "__acall__" in vars(MiddlewareMixin)
    assert "self.__acall__(request)" in inspect.getsource(MiddlewareMixin.__call__)

    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    for cls in fast_classes():
        instance = cls(view)
        assert inspect.iscoroutinefunction(instance), cls
        coroutine = instance(HttpRequest())
        assert coroutine.cr_code is middleware.InlineMixin.__acall__.__code__, cls
        coroutine.close()


def test_it_keeps_process_view_async_where_django_would_hop_to_a_thread():
    # Django's handler awaits a coroutine process_view directly, and sends a plain one to
    # a thread (BaseHandler.adapt_method_mode): these two must stay coroutines.
    for cls in (middleware.CsrfViewMiddleware, middleware.LoginRequiredMiddleware):
        assert asyncio.iscoroutinefunction(cls.process_view), cls
