"""/health?deep=1 without a login cannot make the server ping its sources on demand: it answers
from the last round of pings, at most HEALTH_DEEP_MAX_AGE seconds old; staff get a fresh one."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.test import AsyncClient

from ops import views
from tests.reports.conftest import source_calls

pytestmark = pytest.mark.django_db(transaction=True)


def pings() -> dict[str, float]:
    return {name: source_calls(name) for name in ("postgres", "snowflake")}


async def test_it_pings_the_sources_once_for_many_anonymous_deep_checks() -> None:
    client = AsyncClient()
    before = pings()

    answers = list(await asyncio.gather(*(client.get("/health?deep=1") for _ in range(20))))
    answers += [await client.get("/health?deep=1") for _ in range(5)]

    assert {answer.status_code for answer in answers} == {200}
    assert {answer.json()["status"] for answer in answers} == {"ok"}
    assert all(set(answer.json()["sources"]) == {"postgres", "snowflake"} for answer in answers)
    assert {name: count - before[name] for name, count in pings().items()} == {"postgres": 1, "snowflake": 1}


async def test_it_pings_again_once_the_last_round_is_older_than_the_window(monkeypatch, settings) -> None:
    settings.HEALTH_DEEP_MAX_AGE = 5.0
    client = AsyncClient()
    assert (await client.get("/health?deep=1")).status_code == 200
    before = pings()

    monkeypatch.setattr(views, "_now", lambda: time.monotonic() + 4)
    within = await client.get("/health?deep=1")
    assert pings() == before
    assert 4 <= within.json()["age"] <= 5

    monkeypatch.setattr(views, "_now", lambda: time.monotonic() + 6)
    after = await client.get("/health?deep=1")
    assert after.json()["age"] < 1  # a new round, not the old one
    assert {name: count - before[name] for name, count in pings().items()} == {"postgres": 1, "snowflake": 1}


async def test_it_gives_staff_a_fresh_round_every_time(async_owner_client: AsyncClient) -> None:
    before = pings()
    for _ in range(3):
        response = await async_owner_client.get("/health?deep=1")
        assert response.status_code == 200
        assert response.json()["age"] < 1
    assert {name: count - before[name] for name, count in pings().items()} == {"postgres": 3, "snowflake": 3}


async def test_it_pings_nothing_for_the_shallow_check() -> None:
    before = pings()
    response = await AsyncClient().get("/health")
    assert response.json() == {"status": "ok"}
    assert pings() == before
