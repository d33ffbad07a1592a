from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import psycopg.conninfo
import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import AsyncClient, Client

PASSWORD = "correct horse battery staple"


def make_user(username: str, **kwargs: object) -> User:
    return User.objects.create_user(username=username, password=PASSWORD, email=f"{username}@example.com", **kwargs)


@pytest.fixture
def analysts(db: None) -> Group:
    return Group.objects.create(name="Analysts")


@pytest.fixture
def owner(db: None) -> User:
    """Staff who own reports and TPAs (Healthchecks' alice)."""
    return make_user("alice", is_staff=True)


@pytest.fixture
def member(db: None, analysts: Group) -> User:
    """An analyst in the group that reports are shared with (bob)."""
    user = make_user("bob")
    user.groups.add(analysts)
    return user


@pytest.fixture
def outsider(db: None) -> User:
    """Signed in, but shares nothing with anyone (charlie)."""
    return make_user("charlie")


@pytest.fixture
def owner_client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def member_client(member: User) -> Client:
    client = Client()
    client.force_login(member)
    return client


@pytest.fixture
def outsider_client(outsider: User) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


@pytest.fixture
def async_owner_client(owner: User) -> AsyncClient:
    client = AsyncClient()
    client.force_login(owner)
    return client


@pytest.fixture(autouse=True)
def process_state_of_its_own() -> Iterator[None]:
    """Each test starts with the cache's breaker closed and no in-process copies: a test that
    stops Redis (or points at a dead one) must not leave the next test skipping the cache,
    and a copy loaded in one test's database must not answer in the next's."""
    from project import localcache
    from project.cache import BREAKER

    def reset() -> None:
        BREAKER.reset()
        localcache.clear_all()

    reset()
    yield
    reset()


@pytest.fixture(scope="session", autouse=True)
def report_role_on_the_test_database(django_db_setup: None) -> None:
    """REPORTS_DATABASE_URL (the read-only role `make test` creates) names the database the
    run started with; the role reads the test database instead, as the app does."""
    config = settings.FANOUT_SOURCES["postgres"]
    if config["url"]:
        config["url"] = psycopg.conninfo.make_conninfo(config["url"], dbname=connection.settings_dict["NAME"])


@pytest.fixture(scope="session", autouse=True)
def close_stray_connections(django_db_setup: None, django_db_blocker) -> Iterator[None]:
    """Sync test clients run each async view on a fresh event loop, and a psycopg async pool
    belongs to its loop, so pools of finished loops may still hold connections when the test
    database is dropped. End them first, as the server would on a restart."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


_exit_status = 0


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Exit with pytest's status once it has reported, without waiting for other threads.

    A test that pytest-timeout stops while it waits in async_to_sync leaves that call's
    event loop thread behind, and Python would wait for it at exit forever: CI must end.
    (Idle executor threads, the sources' among them, are also non-daemon: no message.)
    """
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
