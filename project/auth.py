"""Access decorators for views (each works on sync and async views alike), and the cheap
signed-in request: the session engine, `request.auser()` and the API's session auth."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.contrib.sessions.backends import db
from django.core.exceptions import PermissionDenied
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.http import HttpRequest, HttpResponse
from ninja.security import session as ninja_session

from project.localcache import AUTH, MISSING, LocalCache, Missing


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


# --- The signed-in request, without a thread hop or a database round trip ------------------
#
# Who a session belongs to is read once and kept in this process for a few seconds
# (project.localcache): the session and user rows are read again only after the shared auth
# generation moved, which every session write or delete and every user save or delete does
# (logout, a password change, deactivation), in any process, before the next request.

SIGNED_IN = LocalCache("signed-in", ttl=10)
# The auth generation a request's user was read under (set by `auser` on its own copy).
STAMP = "_fanout_auth_stamp"


async def auser(request: HttpRequest) -> User | AnonymousUser:
    """Django's `request.auser()`, from the in-process copy when the generation still matches."""
    if hasattr(request, "_acached_user"):
        return request._acached_user  # type: ignore[no-any-return]
    stamp = await AUTH.aget()
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    user = SIGNED_IN.get(key, stamp) if key else MISSING
    if isinstance(user, Missing):
        user = cast(User | AnonymousUser, await auth.aget_user(request))  # settings: no custom user model
        # Only what Django verified (session found, hash checked), under the key it was found by.
        if user.is_authenticated and key and request.session.session_key == key:
            SIGNED_IN.set(key, copy.copy(user), stamp)
    else:
        request.session.accessed = True  # what a read would have done: the answer varies on Cookie
    user = stamped_copy(user, stamp)
    request._acached_user = user  # type: ignore[attr-defined]
    return user


def stamped_copy[U: User | AnonymousUser](user: U, stamp: int | None) -> U:
    """This request's own copy of a user kept in the process, with the generation it was read
    under: views set attributes on request.user (Django's permission caches too), never on
    the shared copy."""
    user = copy.copy(user)
    setattr(user, STAMP, stamp)
    return user


async def auth_stamp(user: User | AnonymousUser) -> int | None:
    """The auth generation to keep what is derived from `user` under: the one `auser` read
    the user under at the start of this request (no second round trip; a change since then
    reaches the next request), else the current one (a user from a bearer token)."""
    if hasattr(user, STAMP):
        return cast(int | None, getattr(user, STAMP))
    return await AUTH.aget()


class SessionStore(db.SessionStore):
    """Django's database sessions; each write or delete drops every process's signed-in copies."""

    def save(self, must_create: bool = False) -> None:
        super().save(must_create)
        AUTH.bump()

    async def asave(self, must_create: bool = False) -> None:
        await super().asave(must_create)
        await AUTH.abump()

    def delete(self, session_key: str | None = None) -> None:
        super().delete(session_key)
        AUTH.bump()

    async def adelete(self, session_key: str | None = None) -> None:
        await super().adelete(session_key)
        await AUTH.abump()


GROUP_NAMES = LocalCache("group-names", ttl=10)


async def group_names(user: User) -> list[str]:
    """The user's group names, sorted, from the process while the auth generation stands."""
    stamp = await auth_stamp(user)
    names = GROUP_NAMES.get(user.pk, stamp)
    if isinstance(names, Missing):
        names = tuple([name async for name in user.groups.order_by("name").values_list("name", flat=True)])
        GROUP_NAMES.set(user.pk, names, stamp)
    return list(names)


def user_changed(**kwargs: Any) -> None:
    AUTH.bump()


def memberships_changed(*, action: str, pk_set: set[int] | None, **kwargs: Any) -> None:
    if action == "post_clear" or (action in {"post_add", "post_remove"} and pk_set):
        AUTH.bump()


def connect_signals() -> None:
    """Any change to a user (password, active, staff, groups) or to what a user or group may
    do (permissions) reaches every process (AppConfig.ready): what is kept under the auth
    generation (the signed-in user, group names, tpa.cache's access) is read again."""
    model = get_user_model()
    for sender in (model, Group, Permission):
        post_save.connect(user_changed, sender=sender, dispatch_uid=f"project.auth.saved.{sender.__name__}")
        post_delete.connect(user_changed, sender=sender, dispatch_uid=f"project.auth.deleted.{sender.__name__}")
    for through in (model.groups.through, model.user_permissions.through, Group.permissions.through):
        m2m_changed.connect(memberships_changed, sender=through, dispatch_uid=f"project.auth.m2m.{through.__name__}")


class SessionAuth(ninja_session.SessionAuth):
    """django-ninja's session authentication, awaited on the event loop (ninja sends a plain
    callable to a thread); the CSRF check on unsafe methods is ninja's own."""

    async def __call__(self, request: HttpRequest) -> Any:  # type: ignore[override]
        if request.content_type == "multipart/form-data" and request.method not in {"GET", "HEAD", "OPTIONS"}:
            # The CSRF check may read the form, which parses the upload: not on the loop.
            await sync_to_async(self._get_key)(request)
        else:
            self._get_key(request)
        user = await request.auser()  # type: ignore[attr-defined]
        request.user = user
        return user if user.is_authenticated else None


session_auth = SessionAuth()
