"""A cap on every request body, enforced while the body is read (ASGI middleware).

Django's ASGI handler reads the whole body before any Django middleware or view runs
(DESIGN.md, "Facts added 2026-12"), so a limit checked in a view acts only after the
body has arrived. This wraps the application in project/asgi.py instead: a Content-Length
over the URL's limit is answered 413 at once, and a body that grows past it (chunked, or
a lying Content-Length) is answered 413 as soon as the excess arrives; Django then sees a
disconnect and drops what it had read. The rest is never read.

The limit is REQUEST_BODY_LIMITS[url name] for the URLs listed there (the TPA upload URLs)
and DATA_UPLOAD_MAX_MEMORY_SIZE for every other URL.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings
from django.urls import Resolver404, get_resolver

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def limit_for(path: str) -> int:
    """The most bytes a request body to `path` may have."""
    limits: dict[str, int] = getattr(settings, "REQUEST_BODY_LIMITS", {})
    default = int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**63)
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return default
    return int(limits.get(match.view_name, default))


def too_large_message(limit: int) -> str:
    return f"The request body is larger than the limit of {limit / 2**20:g} MiB for this URL."


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        limit = limit_for(path)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django's read_body drops what it has on a disconnect and returns
                    # without a response: the 413 is sent here, the rest is never read.
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracked_send)
        if refused and not started:
            await _refuse(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": too_large_message(limit)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The unread rest of the body would be taken for the next request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
