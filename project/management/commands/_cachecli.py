"""What the cache_* commands share: namespace arguments and readable durations."""

from __future__ import annotations

from django.core.management.base import CommandError

from project import cache


def namespaces_from(names: list[str]) -> list[str]:
    """The named namespaces (all when none are named); an unknown name is an error naming it."""
    known = list(cache.namespaces())
    if unknown := [name for name in names if name not in known]:
        raise CommandError(f"unknown cache namespace {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return names or known
