"""Bearer tokens, verified by OAuth 2.0 token introspection (RFC 7662) once per window.

    user = await verify(token)        # a Django user, or None for an unknown/inactive token

The verdict is cached in the `tokens` namespace under the token's sha256 (the token itself
is never stored or logged): an active token until the earlier of its `exp` and
CACHE_TTLS["tokens"] (60 s), an inactive one for TOKEN_NEGATIVE_TTL, so a flood of bad
tokens does not reach the auth server. `project.cache.load` makes concurrent first
requests for one token, in any process, share one introspection call. The token's subject
and issuer map to a Django user through `project.models.TokenIdentity`: linked by
(issuer, subject), never by username, a new identity gets a new user without staff rights;
a local staff account is reached only through a link an administrator made. The token's
groups claim grants only the local groups TOKEN_GROUPS maps it to, and never takes away a
group that was assigned locally.

A request with a bearer token is answered here unless the token stands for a user: an
empty or malformed token gets 401 (with `WWW-Authenticate: Bearer`) without an
introspection call, an unknown or inactive one 401, a client past its share of
introspection calls (RATE_LIMITS["token-introspection"]) 429, and an auth server that is
down or not configured 503. Sessions are not affected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import weakref
from collections.abc import Callable
from typing import Any, TypedDict

import httpx
from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja.security import HttpBearer

from project import localcache, ratelimit
from project.auth import stamped_copy
from project.models import TokenIdentity

logger = logging.getLogger(__name__)


class TokenRefused(Exception):
    """A bearer request answered here, with `message` as the JSON detail."""

    http_status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> HttpResponse:
        return JsonResponse({"detail": self.message}, status=self.http_status)


class AuthServerUnavailable(TokenRefused):
    """The introspection endpoint could not give a verdict; the request gets 503."""


class InvalidToken(TokenRefused):
    """The token is empty, malformed or not accepted: 401 with `WWW-Authenticate: Bearer`."""

    http_status = 401

    def response(self) -> HttpResponse:
        return unauthorized(self.message, error="invalid_token")


def unauthorized(message: str, *, error: str = "") -> HttpResponse:
    """401 that tells the client how to authenticate (RFC 6750 section 3)."""
    response = JsonResponse({"detail": message}, status=401)
    challenge = f'Bearer error="{error}", error_description="{message}"' if error else "Bearer"
    response["WWW-Authenticate"] = challenge.replace("\n", " ")
    return response


# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MAX_TOKEN_LENGTH = 8192


def token_problem(token: str) -> str | None:
    """Why `token` cannot be a bearer token at all (checked before any introspection call)."""
    if not token:
        return "The bearer token is empty."
    if len(token) > MAX_TOKEN_LENGTH:
        return f"The bearer token is longer than {MAX_TOKEN_LENGTH} characters."
    if not B64TOKEN.fullmatch(token):
        return "The bearer token is malformed (RFC 6750 allows letters, digits and -._~+/ then =)."
    return None


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
    auth: dict[str, Any] = (
        {"auth": (str(settings.TOKEN_CLIENT_ID), str(settings.TOKEN_CLIENT_SECRET))} if settings.TOKEN_CLIENT_ID else {}
    )
    try:
        response = await _client().post(url, data={"token": token, "token_type_hint": "access_token"}, **auth)
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


def issuer_of(claims: dict[str, Any]) -> str:
    """Who vouches for the subject: the token's `iss`, else the introspection endpoint itself."""
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) and issuer else str(settings.TOKEN_INTROSPECTION_URL)


async def _user_for(claims: dict[str, Any]) -> User | None:
    """The user linked to the token's (issuer, subject), linked to a new user on first sight."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        return None
    issuer = issuer_of(claims)[:255]
    identity = await TokenIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).afirst()
    if identity is None:
        identity = await _new_identity(issuer, subject, claims)
    await _grant_groups(identity, claims)
    return identity.user


async def _new_identity(issuer: str, subject: str, claims: dict[str, Any]) -> TokenIdentity:
    """A new user without staff rights for an identity never seen before. The token's username
    is only a name hint: when a local account has it, the new user gets a distinct one."""
    hint = claims.get(settings.TOKEN_USERNAME_CLAIM)
    name = (hint if isinstance(hint, str) and hint.strip() else subject).strip()[:120]
    if await User.objects.filter(username=name).aexists():
        name = f"{name}~{hashlib.sha256(f'{issuer} {subject}'.encode()).hexdigest()[:12]}"

    def create() -> TokenIdentity:
        try:
            with transaction.atomic():
                user = User.objects.create(
                    username=name, password=make_password(None), email=str(claims.get("email") or "")[:254]
                )
                return TokenIdentity.objects.create(issuer=issuer, subject=subject, user=user)
        except IntegrityError:
            # Another request linked this identity at the same moment: theirs stands.
            return TokenIdentity.objects.select_related("user").get(issuer=issuer, subject=subject)

    return await sync_to_async(create)()


async def _grant_groups(identity: TokenIdentity, claims: dict[str, Any]) -> None:
    """The local groups TOKEN_GROUPS maps the claimed groups to; only groups that a token
    granted earlier and no longer claims are taken away."""
    claimed = claims.get(settings.TOKEN_GROUPS_CLAIM)
    if isinstance(claimed, str):
        claimed = claimed.split()
    if not isinstance(claimed, list):
        return
    mapping: dict[str, str] = settings.TOKEN_GROUPS
    wanted = {mapping[name] for name in claimed if isinstance(name, str) and name in mapping}
    user = identity.user
    current = {name async for name in user.groups.values_list("name", flat=True)}
    granted = set(identity.granted_groups)
    add = wanted - current
    remove = (granted - wanted) & current
    if add:
        await user.groups.aadd(*[group async for group in Group.objects.filter(name__in=add)])
    if remove:
        await user.groups.aremove(*[group async for group in Group.objects.filter(name__in=remove)])
    now_granted = sorted((granted & wanted) | add)
    if now_granted != sorted(identity.granted_groups):
        identity.granted_groups = now_granted
        await identity.asave(update_fields=["granted_groups"])


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


async def verify(token: str, client: str | None = None) -> User | None:
    """The active user `token` stands for, or None. Raises InvalidToken (malformed),
    AuthServerUnavailable, or RateLimited when `client` is past its introspection calls."""
    if problem := token_problem(token):
        raise InvalidToken(problem)
    if not settings.TOKEN_INTROSPECTION_URL:
        raise InvalidToken("Bearer tokens are not accepted here: TOKEN_INTROSPECTION_URL is not set.")
    digest = token_hash(token)

    async def loader() -> Verdict:
        if client is not None:
            # Only a call to the auth server counts: cached verdicts cost nothing, so a
            # client inventing tokens is stopped here, one that reuses its token never is.
            await sync_to_async(ratelimit.hit, thread_sensitive=False)("token-introspection", client)
        return await _load_verdict(token)

    # The verdict from the process when it holds one (no thread hop; localcache), else the cache.
    entry = await localcache.load("tokens", digest, loader)
    if _expired(entry.value, entry.stored_at):
        entry = await localcache.load("tokens", digest, loader, fresh=True)
    verdict: Verdict = entry.value
    if not verdict.get("active"):
        return None
    if (exp := verdict.get("exp")) is not None and _now() >= exp:
        return None  # active, says the server, but past its expiry: refuse rather than trust
    return await _active_user(verdict["user_id"])


# The users tokens stand for, by id, kept while the auth generation stands (any save of a
# user, such as a deactivation, moves it), as project.auth keeps the signed-in user.
TOKEN_USERS = localcache.LocalCache("token-users", ttl=10)


async def _active_user(user_id: int) -> User | None:
    stamp = await localcache.AUTH.aget()
    user = TOKEN_USERS.get(user_id, stamp)
    if isinstance(user, localcache.Missing):
        user = await User.objects.filter(pk=user_id).afirst()
        TOKEN_USERS.set(user_id, user, stamp)
    if user is None or not user.is_active:
        return None
    return stamped_copy(user, stamp)


def bearer_token(request: HttpRequest) -> str | None:
    """The text after `Bearer ` (possibly empty or malformed), or None without a bearer header."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def client_address(request: HttpRequest) -> str:
    """Who is counted for introspection calls: the client's address (before anyone is signed in)."""
    return f"addr:{request.META.get('REMOTE_ADDR', '-')}"


class BearerAuth(HttpBearer):
    """The API's bearer authentication (ninja): `auth=[bearer, django_auth]`."""

    async def authenticate(self, request: HttpRequest, token: str) -> User | None:
        if hasattr(request, "bearer_user"):  # the middleware has verified it already
            user = request.bearer_user
        else:
            try:
                user = await verify(token.strip(), client_address(request))
            except InvalidToken:
                return None
        if user is not None:
            request.user = user
        return user


bearer = BearerAuth()


class BearerTokenMiddleware:
    """Let pages and the API accept `Authorization: Bearer` as well as the session.

    Place it after AuthenticationMiddleware. A verified token sets request.user and turns
    off CSRF for that request (a bearer token is not sent by a browser on its own, so
    there is no cross-site forgery to guard against). Requests without the header pass
    untouched; a token that stands for no user is answered here (see the module's doc).
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
            refused = async_to_sync(self._sign_in)(request, token)
            if refused is not None:
                return refused
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        if (token := bearer_token(request)) is not None:
            refused = await self._sign_in(request, token)
            if refused is not None:
                return refused
        return await self.get_response(request)

    @staticmethod
    async def _sign_in(request: HttpRequest, token: str) -> HttpResponse | None:
        """Sign the token's user in; the answer to send instead when it stands for no one."""
        try:
            user = await verify(token, client_address(request))
        except (InvalidToken, AuthServerUnavailable) as exc:
            return exc.response()
        except ratelimit.RateLimited as exc:
            return exc.response(request)
        if user is None:
            return unauthorized("The bearer token is not active (unknown, expired or revoked).", error="invalid_token")
        request.bearer_user = user  # type: ignore[attr-defined]
        request.user = user

        async def auser() -> User:
            return user

        request.auser = auser  # type: ignore[method-assign]
        request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        return None
