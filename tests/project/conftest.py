from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache as django_cache

from project import cache


@pytest.fixture
def clean_cache() -> Iterator[None]:
    """An empty cache and counters; the apps' warmers put back afterwards."""
    cache.flush_stats()
    django_cache.clear()
    warmers = dict(cache._warmers)
    yield
    # Tests register warmers of their own.
    cache._warmers.clear()
    cache._warmers.update(warmers)
    django_cache.clear()


@pytest.fixture
def cache_admin(owner: User) -> User:
    """Staff with the permission to control caches."""
    owner.user_permissions.add(Permission.objects.get(codename="control_cache"))
    return owner


@pytest.fixture
def auth_server(settings) -> Iterator[Any]:
    """A real RFC 7662 endpoint on loopback (tests/project/test_tokens.py), configured as the
    service's auth server with client credentials."""
    from tests.project.test_tokens import IntrospectionServer

    server = IntrospectionServer(delay=0.3)
    settings.TOKEN_INTROSPECTION_URL = server.url
    settings.TOKEN_CLIENT_ID = "fanout"
    settings.TOKEN_CLIENT_SECRET = "s3cret"
    yield server
    server.stop()
