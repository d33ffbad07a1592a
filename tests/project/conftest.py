from __future__ import annotations

from collections.abc import Iterator

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
