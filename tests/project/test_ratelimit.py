from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache as django_cache
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from project import cache, ratelimit
from tpa.demo import claims_schema
from tpa.models import Tpa


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    django_cache.clear()
    yield
    django_cache.clear()


@pytest.fixture
def master_data(db: None, member) -> Iterator[dict[str, int]]:
    # /api/tpa/master-data answers only with TPAs the user may see: one TPA, seen by both users.
    Tpa.objects.create(code="ACME", name="Acme", target_schema=claims_schema())
    member.user_permissions.add(Permission.objects.get(codename="view_tpa"))
    loads = {"n": 0}

    async def load_master_data() -> dict[str, dict[str, int]]:
        loads["n"] += 1
        return {"ACME": {"version": loads["n"]}}

    previous = cache.warmer("master-data")
    cache.register_warmer("master-data", load_master_data)
    yield loads
    if previous is not None:
        cache.register_warmer("master-data", previous.loader, key=previous.key)


@pytest.fixture
def fresh_twice_an_hour(settings) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "fresh": "2/h"}


def test_it_answers_429_with_retry_after_past_the_limit_and_works_again_after(
    owner, owner_client, master_data, fresh_twice_an_hour
) -> None:
    assert owner_client.get("/api/tpa/master-data?fresh=1").json()["data"] == {"ACME": {"version": 1}}
    assert owner_client.get("/api/tpa/master-data?fresh=1").json()["data"] == {"ACME": {"version": 2}}
    refused = owner_client.get("/api/tpa/master-data?fresh=1")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "the limit is 2 per hour" in refused.json()["detail"]
    assert master_data["n"] == 2
    # Cached reads are not limited.
    cached = owner_client.get("/api/tpa/master-data").json()
    assert (cached["data"], cached["cached"]) == ({"ACME": {"version": 2}}, True)
    ratelimit.reset("fresh", f"user:{owner.pk}")  # the window ends
    again = owner_client.get("/api/tpa/master-data?fresh=1")
    assert again.status_code == 200
    assert again.json()["data"] == {"ACME": {"version": 3}}


def test_it_counts_each_user_separately(owner_client, member_client, master_data, fresh_twice_an_hour) -> None:
    for _ in range(2):
        owner_client.get("/api/tpa/master-data?fresh=1")
    assert owner_client.get("/api/tpa/master-data?fresh=1").status_code == 429
    assert member_client.get("/api/tpa/master-data?fresh=1").status_code == 200


def test_it_limits_sync_and_async_views_alike(member, settings) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "upload": "1/m"}

    @ratelimit.ratelimit("upload")
    def sync_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("uploaded")

    @ratelimit.ratelimit("upload")
    async def async_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("uploaded")

    def request() -> HttpRequest:
        made = RequestFactory().post("/tpa/1/upload")
        made.user = member

        async def auser():
            return member

        made.auser = auser
        return made

    from asgiref.sync import async_to_sync

    assert sync_view(request()).status_code == 200
    refused = async_to_sync(async_view)(request())
    assert refused.status_code == 429
    assert refused["Retry-After"].isdigit()
    assert "Too many requests (upload): the limit is 1 per minute" in refused.content.decode()


def test_it_refuses_an_unknown_limit_name_at_import() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="no rate limit named 'uplaod'"):
        ratelimit.ratelimit("uplaod")


def test_it_counts_requests_from_every_process_together(settings) -> None:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("needs a shared cache (REDIS_URL)")
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "pipeline-start": "3/h"}
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from django.conf import settings
        settings.RATE_LIMITS["pipeline-start"] = "3/h"
        from project import ratelimit
        try:
            ratelimit.hit("pipeline-start", "user:42")
            print("ok")
        except ratelimit.RateLimited:
            print("limited")
        """
    )
    answers = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(4)
    ]
    assert answers == ["ok", "ok", "ok", "limited"]


def test_it_parses_limits() -> None:
    assert ratelimit.Limit.parse("30/m") == ratelimit.Limit(30, 60)
    assert ratelimit.Limit.parse("100/10m") == ratelimit.Limit(100, 600)
    assert str(ratelimit.Limit.parse("20/h")) == "20 per hour"


# A minute that ends half a second after the client's fifth request.
MINUTE_ENDS = 1_800_000_000 // 60 * 60 + 60.0


def test_a_client_at_the_limit_stays_refused_when_a_window_ends(settings) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "pipeline-start": "5/m"}
    for n in range(5):
        ratelimit.hit("pipeline-start", "user:7", now=MINUTE_ENDS - 0.5 + n * 0.05)
    # The next minute has begun, but the client made five requests in the last second.
    with pytest.raises(ratelimit.RateLimited) as refused:
        ratelimit.hit("pipeline-start", "user:7", now=MINUTE_ENDS + 0.1)
    # The past minute's five fade out over this one: one more fits after 12 s (1 + 5 × 48/60 = 5).
    assert refused.value.retry_after == 12


def test_refused_requests_do_not_count(settings) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "pipeline-start": "5/m"}
    for n in range(5):
        ratelimit.hit("pipeline-start", "user:8", now=MINUTE_ENDS - 0.5 + n * 0.05)
    for n in range(20):  # a client retrying as fast as it can
        with pytest.raises(ratelimit.RateLimited):
            ratelimit.hit("pipeline-start", "user:8", now=MINUTE_ENDS + 0.1 + n * 0.5)
    ratelimit.hit("pipeline-start", "user:8", now=MINUTE_ENDS + 12.0)  # as Retry-After said
    with pytest.raises(ratelimit.RateLimited):
        ratelimit.hit("pipeline-start", "user:8", now=MINUTE_ENDS + 12.1)


def test_a_limit_of_one_per_hour_lets_the_next_request_through_an_hour_after_the_first(settings) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "pipeline-start": "1/h"}
    ratelimit.hit("pipeline-start", "user:9", now=MINUTE_ENDS - 600)
    with pytest.raises(ratelimit.RateLimited) as refused:
        ratelimit.hit("pipeline-start", "user:9", now=MINUTE_ENDS)
    assert refused.value.retry_after == 3000
    ratelimit.hit("pipeline-start", "user:9", now=MINUTE_ENDS + 3000)


def test_concurrent_requests_pass_no_more_than_the_limit(settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "pipeline-start": "5/h"}

    def attempt(_: int) -> bool:
        try:
            ratelimit.hit("pipeline-start", "user:10")
        except ratelimit.RateLimited:
            return False
        return True

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert sum(pool.map(attempt, range(40))) == 5
