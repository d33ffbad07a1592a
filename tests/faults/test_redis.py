"""Redis stopped while serving: pages work without the cache, and use it again when it returns."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.test import Client

from project import cache
from tests.faults.blackhole import BlackHole
from tests.faults.conftest import Redis
from tests.reports.conftest import make_panel, make_report
from tpa import cache as tpa_cache
from tpa import demo
from tpa.models import Tpa

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def on_redis(redis_server: Redis, settings) -> Iterator[Redis]:
    """The app's cache on a private Redis, configured as settings.py configures REDIS_URL."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_server.url,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 1.0,
                "SOCKET_TIMEOUT": 1.0,
                "IGNORE_EXCEPTIONS": True,
            },
            "KEY_PREFIX": "fanout-fault",
        }
    }
    # After a failure the cache counts as down this long before one call tries it again.
    settings.CACHE_BREAKER_SECONDS = 0.2
    cache.BREAKER.reset()
    yield redis_server
    cache.BREAKER.reset()


def make_tpa(code: str) -> Tpa:
    return Tpa.objects.create(code=code, name=f"{code} Benefits", target_schema=demo.claims_schema())


def counts(namespace: str) -> tuple[int, int, int]:
    stats = cache.STATS[namespace]
    return stats.hits, stats.misses, stats.loads


def get_until_hit(client: Client, url: str, namespace: str, seconds: float = 30.0) -> bool:
    """After Redis returns, reads miss until the breaker lets one call try it again (and the
    first may still meet a dropped pooled connection); then one must be served from Redis."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hits = counts(namespace)[0]
        assert client.get(url).status_code == 200
        if counts(namespace)[0] > hits:
            return True
        time.sleep(0.05)
    return False


def test_it_serves_the_tpa_list_and_reports_while_redis_is_down_and_uses_it_again_after(
    on_redis: Redis, owner: User, analysts: Group, owner_client: Client
) -> None:
    make_tpa("ACME")
    report = make_report(owner, groups=[analysts], slug="fault-redis")
    panel = make_panel(report, "SELECT 'ok' AS status, 42 AS answer", title="Quick")
    panel_url = f"/reports/{report.slug}/panels/{panel.pk}/"

    assert "ACME" in owner_client.get("/tpa/").content.decode()
    hits, misses, loads = counts("tpa-list")
    assert "ACME" in owner_client.get("/tpa/").content.decode()
    # Served from the cache (Redis, or the process's short copy of it): nothing loaded again.
    assert counts("tpa-list")[1:] == (misses, loads)
    assert owner_client.get(panel_url).status_code == 200

    on_redis.stop()

    # Every read is a miss now, and each page loads from Postgres instead of failing.
    hits, misses, loads = counts("tpa-list")
    for _ in range(2):
        page = owner_client.get("/tpa/")
        assert page.status_code == 200 and "ACME" in page.content.decode()
    assert counts("tpa-list") == (hits, misses + 2, loads + 2)
    api = owner_client.get("/api/tpa/tpas")
    assert api.status_code == 200 and [t["code"] for t in api.json()] == ["ACME"]
    fragment = owner_client.get(panel_url)
    assert fragment.status_code == 200 and '<td class="align-right">42</td>' in fragment.content.decode()

    on_redis.start()

    assert get_until_hit(owner_client, "/tpa/", "tpa-list")
    assert get_until_hit(owner_client, panel_url, "panel-results")
    assert "ACME" in owner_client.get("/tpa/").content.decode()


def test_it_stores_a_save_and_tells_its_caller_that_the_invalidation_did_not_reach_redis(on_redis: Redis) -> None:
    make_tpa("ACME")
    on_redis.stop()
    # The save commits; the invalidation that follows cannot reach Redis, and the save path
    # hears which namespaces it could not tell, to say so to the person who saved.
    make_tpa("BETA")
    assert tpa_cache.invalidate() == ["tpa-list", "master-data"]
    assert Tpa.objects.filter(code="BETA").exists()


def test_it_reports_an_invalidation_that_cannot_reach_redis(on_redis: Redis) -> None:
    on_redis.stop()
    with pytest.raises(cache.CacheUnavailable):
        cache.invalidate("master-data")
    with pytest.raises(cache.CacheUnavailable):  # while the breaker is open, at once
        cache.invalidate("master-data")


@pytest.fixture
def on_black_hole(settings) -> Iterator[BlackHole]:
    """The app's cache on a Redis that accepts connections and never answers."""
    with BlackHole() as hole:
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": hole.url,
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.DefaultClient",
                    "SOCKET_CONNECT_TIMEOUT": 0.2,
                    "SOCKET_TIMEOUT": 0.2,
                    "IGNORE_EXCEPTIONS": True,
                },
                "KEY_PREFIX": "fanout-fault",
            }
        }
        settings.CACHE_BREAKER_SECONDS = 60.0  # open for the whole test once tripped
        cache.BREAKER.reset()
        yield hole
        cache.BREAKER.reset()


def test_it_serves_a_report_on_a_black_holed_redis_and_stops_asking_it(
    on_black_hole: BlackHole, owner: User, analysts: Group, owner_client: Client
) -> None:
    report = make_report(owner, groups=[analysts], slug="black-hole")
    panels = [make_panel(report, f"SELECT {n} AS answer", title=f"Panel {n}") for n in range(6)]
    for panel in panels:
        fragment = owner_client.get(f"/reports/{report.slug}/panels/{panel.pk}/")
        assert fragment.status_code == 200
        assert f'<td class="align-right">{panel.title.split()[-1]}</td>' in fragment.content.decode()
    # The first call that timed out opened the breaker: the other panels' reads, lock and
    # writes never went to the server (about six calls each before).
    assert on_black_hole.requests <= 2, on_black_hole.requests


def test_it_keeps_a_reports_definition_but_checks_access_on_every_fragment_while_redis_is_down(
    on_black_hole: BlackHole, owner: User, analysts: Group, owner_client: Client
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    report = make_report(owner, groups=[analysts], slug="kept-while-down")
    panel = make_panel(report, "SELECT 1 AS answer", title="Answer")
    url = f"/reports/{report.slug}/panels/{panel.pk}/"
    assert owner_client.get(url).status_code == 200  # trips the breaker; the definition is read
    with CaptureQueriesContext(connection) as queries:
        assert owner_client.get(url).status_code == 200
    read = " ".join(query["sql"] for query in queries)
    assert "reports_panel" not in read  # the definition (report, panels, filters) was kept
    assert "reports_report_groups" in read  # who may see it was asked again
    # An edit in this process shows on the next request, Redis or not.
    panel.sql = "SELECT 2 AS answer"
    panel.save()
    assert '<td class="align-right">2</td>' in owner_client.get(url).content.decode()


def test_it_lets_rate_limited_requests_through_a_black_holed_redis_without_asking_it_each_time(
    on_black_hole: BlackHole, owner: User, analysts: Group, owner_client: Client
) -> None:
    report = make_report(owner, groups=[analysts], slug="limited")
    make_panel(report, "SELECT 1 AS answer", title="Answer")
    for _ in range(5):
        # Each run counts against the report-run limit, a cache write: a limit that cannot be
        # counted lets the request through instead of failing or waiting on the cache.
        answer = owner_client.get(f"/api/reports/{report.slug}/run")
        assert answer.status_code == 200
        assert answer.json()["panels"][0]["rows"] == [[1]]
    assert on_black_hole.requests <= 2, on_black_hole.requests


@pytest.fixture
def redis_admin(on_redis: Redis, owner: User) -> Client:
    """Staff with the cache control permission, signed in before Redis goes away (sessions are in Postgres)."""
    owner.user_permissions.add(Permission.objects.get(codename="control_cache"))
    client = Client()
    client.force_login(owner)
    return client


def test_it_tells_staff_that_an_invalidation_did_not_happen_while_redis_is_down(
    on_redis: Redis, redis_admin: Client
) -> None:
    generation = cache.generation("tpa-list")
    on_redis.stop()
    page = redis_admin.post("/admin/caches/tpa-list/invalidate/", follow=True)
    assert page.status_code == 200
    assert "Could not invalidate tpa-list: the cache is unavailable" in page.content.decode()
    answer = redis_admin.post("/api/cache/tpa-list/invalidate")
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith("the cache is unavailable")
    with pytest.raises(CommandError, match="tpa-list: the cache is unavailable"):
        call_command("cache_clear", "tpa-list", "--yes")
    on_redis.start()
    cache.BREAKER.reset()
    assert cache.generation("tpa-list") == generation  # nothing was half done
