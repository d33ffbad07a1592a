"""Redis stopped while serving: pages work without the cache, and use it again when it returns."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from project import cache
from tests.faults.conftest import Redis
from tests.reports.conftest import make_panel, make_report
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
    yield redis_server


def make_tpa(code: str) -> Tpa:
    return Tpa.objects.create(code=code, name=f"{code} Benefits", target_schema=demo.claims_schema())


def counts(namespace: str) -> tuple[int, int, int]:
    stats = cache.STATS[namespace]
    return stats.hits, stats.misses, stats.loads


def get_until_hit(client: Client, url: str, namespace: str, tries: int = 3) -> bool:
    """The first read after Redis returns may still meet a dropped pooled connection (a miss,
    handled as one); within a few reads one must be served from Redis."""
    for _ in range(tries):
        hits = counts(namespace)[0]
        assert client.get(url).status_code == 200
        if counts(namespace)[0] > hits:
            return True
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
    assert counts("tpa-list") == (hits + 1, misses, loads)  # served from Redis
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
    assert fragment.status_code == 200 and "<td>42</td>" in fragment.content.decode()

    on_redis.start()

    assert get_until_hit(owner_client, "/tpa/", "tpa-list")
    assert get_until_hit(owner_client, panel_url, "panel-results")
    assert "ACME" in owner_client.get("/tpa/").content.decode()


def test_it_saves_master_data_while_redis_is_down(on_redis: Redis) -> None:
    make_tpa("ACME")
    on_redis.stop()
    # The save's on_commit invalidation of tpa-list / master-data must not fail the save.
    tpa = make_tpa("BETA")
    assert Tpa.objects.filter(pk=tpa.pk).exists()
