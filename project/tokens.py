"""Bearer tokens, verified by OAuth 2.0 token introspection (RFC 7662) once per window.

    user = await verify(token)        # a Django user, or None for an unknown/inactive token

The verdict is cached in the `tokens` namespace under the token's sha256 (the token itself
is never stored or logged): an active token until the earlier of its `exp` and
CACHE_TTLS["tokens"] (60 s), an inactive one for TOKEN_NEGATIVE_TTL, so a flood of bad
tokens does not reach the auth server. `project.cache.load` makes concurrent first
requests for one token, in any process, share one introspection call. The token's subject
maps to a Django user, created on first sight, whose groups follow the token's groups
claim (groups that exist in Django), so permissions work as for a session.

An auth server that is down or misconfigured raises AuthServerUnavailable: the bearer
request gets 503, sessions are not affected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

import httpx
from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja.security import HttpBearer

from project import cache

logger = logging.getLogger(__name__)


class AuthServerUnavailable(Exception):
    """The introspection endpoint could not give a verdict; the request gets 503."""

    http_status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> HttpResponse:
        return JsonResponse({"detail": self.message}, status=self.http_status)


class Verdict(TypedDict, total=False):
    """What the `tokens` namespace keeps per token hash."""

    active: bool
    user_id: int
    exp: float | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> float:
    # One clock for the token windows (tests move it instead of sleeping).
    return time.time()


# One pooled client per event loop: an httpx.AsyncClient belongs to the loop it runs on.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    if (client := _clients.get(loop)) is None:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.TOKEN_INTROSPECTION_TIMEOUT),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"Accept": "application/json"},
        )
        _clients[loop] = client
    return client


async def introspect(token: str) -> dict[str, Any]:
    """The auth server's claims for `token` (RFC 7662 section 2.2)."""
    url = settings.TOKEN_INTROSPECTION_URL
    if not url:
        raise AuthServerUnavailable("Bearer tokens are not accepted here: TOKEN_INTROSPECTION_URL is not set.")
    auth = (settings.TOKEN_CLIENT_ID, settings.TOKEN_CLIENT_SECRET) if settings.TOKEN_CLIENT_ID else None
    try:
        response = await _client().post(url, data={"token": token, "token_type_hint": "access_token"}, auth=auth)
    except httpx.TimeoutException as exc:
        raise AuthServerUnavailable(
            f"The auth server did not answer within {settings.TOKEN_INTROSPECTION_TIMEOUT:g} s; try again shortly."
        ) from exc
    except httpx.HTTPError as exc:
        raise AuthServerUnavailable("The auth server cannot be reached; try again shortly.") from exc
    if response.status_code != 200:
        logger.warning("token introspection answered HTTP %s", response.status_code)
        raise AuthServerUnavailable(f"The auth server answered HTTP {response.status_code}; try again shortly.")
    try:
        claims = response.json()
    except ValueError as exc:
        raise AuthServerUnavailable("The auth server's answer was not JSON.") from exc
    if not isinstance(claims, dict):
        raise AuthServerUnavailable("The auth server's answer was not a JSON object.")
    return claims


async def _user_for(claims: dict[str, Any]) -> User | None:
    """The Django user named by the claims, created on first sight, groups as claimed."""
    username = claims.get(settings.TOKEN_USERNAME_CLAIM) or claims.get("sub")
    if not username or not isinstance(username, str):
        return None
    user, _ = await User.objects.aget_or_create(
        username=username[:150],
        defaults={"password": make_password(None), "email": str(claims.get("email") or "")},
    )
    claimed = claims.get(settings.TOKEN_GROUPS_CLAIM)
    if isinstance(claimed, str):
        claimed = claimed.split()
    if isinstance(claimed, list):
        groups = [group async for group in Group.objects.filter(name__in=[str(name) for name in claimed])]
        await user.groups.aset(groups)
    return user


async def _load_verdict(token: str) -> Verdict:
    claims = await introspect(token)
    if claims.get("active") is not True:
        return {"active": False}
    user = await _user_for(claims)
    if user is None:
        logger.warning("active token %s… names no user", token_hash(token)[:12])
        return {"active": False}
    exp = claims.get("exp")
    return {"active": True, "user_id": user.pk, "exp": float(exp) if isinstance(exp, int | float) else None}


def _expired(verdict: Verdict, stored_at: float) -> bool:
    now = _now()
    if not verdict.get("active"):
        return now >= stored_at + settings.TOKEN_NEGATIVE_TTL
    if now >= stored_at + settings.CACHE_TTLS["tokens"]:
        return True
    exp = verdict.get("exp")
    return exp is not None and now >= exp


async def verify(token: str) -> User | None:
    """The active user `token` stands for, or None. Raises AuthServerUnavailable."""
    digest = token_hash(token)

    def loader() -> Awaitable[Verdict]:
        return _load_verdict(token)

    entry = await cache.load("tokens", digest, loader)
    if _expired(entry.value, entry.stored_at):
        entry = await cache.load("tokens", digest, loader, fresh=True)
    verdict: Verdict = entry.value
    if not verdict.get("active"):
        return None
    if (exp := verdict.get("exp")) is not None and _now() >= exp:
        return None  # active, says the server, but past its expiry: refuse rather than trust
    user = await User.objects.filter(pk=verdict["user_id"]).afirst()
    if user is None or not user.is_active:
        return None
    return user


def bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class BearerAuth(HttpBearer):
    """The API's bearer authentication (ninja): `auth=[bearer, django_auth]`."""

    async def authenticate(self, request: HttpRequest, token: str) -> User | None:
        if hasattr(request, "bearer_user"):  # the middleware has verified it already
            user = request.bearer_user
        else:
            user = await verify(token)
        if user is not None:
            request.user = user
        return user


bearer = BearerAuth()


class BearerTokenMiddleware:
    """Let pages accept `Authorization: Bearer` as well as the session.

    Place it after AuthenticationMiddleware. A verified token sets request.user and turns
    off CSRF for that request (a bearer token is not sent by a browser on its own, so
    there is no cross-site forgery to guard against). Requests without the header pass
    untouched; an unknown token leaves the user anonymous.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if (token := bearer_token(request)) is not None:
            try:
                user = async_to_sync(verify)(token)
            except AuthServerUnavailable as exc:
                return exc.response()
            self._sign_in(request, user)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        if (token := bearer_token(request)) is not None:
            try:
                user = await verify(token)
            except AuthServerUnavailable as exc:
                return exc.response()
            self._sign_in(request, user)
        return await self.get_response(request)

    @staticmethod
    def _sign_in(request: HttpRequest, user: User | None) -> None:
        request.bearer_user = user  # type: ignore[attr-defined]
        if user is None:
            return
        request.user = user

        async def auser() -> User:
            return user

        request.auser = auser  # type: ignore[method-assign]
        request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
