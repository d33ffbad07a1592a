"""Namespaces and keys: `<namespace>:<sha of the key parts>`, and each namespace's generation key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings


def namespaces() -> dict[str, int]:
    """Each namespace and its TTL in seconds."""
    return dict(settings.CACHE_TTLS)


def check(namespace: str) -> None:
    if namespace not in settings.CACHE_TTLS:
        raise ValueError(f"unknown cache namespace {namespace!r}; known: {', '.join(settings.CACHE_TTLS)}")


def make_key(namespace: str, *parts: Any) -> str:
    """A short, safe cache key for any JSON-able key parts."""
    check(namespace)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"{namespace}:{digest}"


def generation_key(namespace: str) -> str:
    return f"generation:{namespace}"
