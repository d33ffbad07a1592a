"""project.localcache: copies of hot reads kept in the process, dropped at once when the
shared generation moves, on the real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis
from django.core.cache import cache as django_cache

from project import cache, localcache
from project.localcache import Generation, redis_url

pytestmark = pytest.mark.skipif(redis_url() is None, reason="without Redis nothing is kept in the process")


def served(*commands: str) -> int:
    """How many of these commands the Redis server has answered so far."""
    stats = redis.Redis.from_url(str(redis_url())).info("commandstats")
    return sum(int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)) for command in commands)


def gets_served() -> int:
    return served("get")


async def test_it_shares_a_read_among_concurrent_readers_and_never_one_sent_before_they_came():
    generation = Generation("test-shared-reads")
    client = redis.Redis.from_url(str(redis_url()))
    client.set(generation.key, 7)
    before = gets_served()
    assert await asyncio.gather(*(generation.aget() for _ in range(50))) == [7] * 50
    assert gets_served() - before <= 2
    # A bump, then a reader: it sees the bump even while an older read is on the wire.
    first = asyncio.ensure_future(generation.aget())
    await asyncio.sleep(0)  # the first read is sent
    client.incr(generation.key)
    assert await generation.aget() == 8
    assert await first in {7, 8}


def generation_reads() -> int:
    return served("get", "mget")


async def in_a_request(work):
    """`work` in a task of its own, as each request is."""
    return await asyncio.ensure_future(work())


async def test_a_request_reads_its_other_generations_with_the_auth_generation():
    other = Generation("test-with-auth")
    client = redis.Redis.from_url(str(redis_url()))
    client.set(other.key, 3)
    await in_a_request(other.aget)  # this process reads it: it comes with the auth generation from now on

    async def request() -> tuple[int | None, int]:
        await localcache.AUTH.aget()
        before = generation_reads()
        value = await other.aget()
        return value, generation_reads() - before

    before = generation_reads()
    assert await in_a_request(request) == (3, 0)  # no round trip of its own
    assert generation_reads() - before == 1  # one MGET for both
    # Another process bumps it between requests: the next request sees the bump.
    client.incr(other.key)
    assert (await in_a_request(request))[0] == 4

    async def bumps_and_reads() -> int | None:
        await localcache.AUTH.aget()
        client.incr(other.key)  # another process, during this request: seen from the next one
        assert await other.aget() == 4
        other._incr()  # this request's own bump (a save): read again, never the old value
        return await other.aget()

    assert await in_a_request(bumps_and_reads) == 6


@pytest.mark.django_db(transaction=True)
async def test_a_request_reads_its_own_invalidation_of_a_namespace():
    await django_cache.aclear()
    loads = 0

    async def loader() -> int:
        nonlocal loads
        loads += 1
        return loads

    await in_a_request(lambda: localcache.load("tpa-list", "own-writes", loader))

    async def request() -> tuple[int, int]:
        await localcache.AUTH.aget()
        first = (await localcache.load("tpa-list", "own-writes", loader)).value
        await cache.ainvalidate("tpa-list")  # the admin saved a TPA, in this request
        return first, (await localcache.load("tpa-list", "own-writes", loader)).value

    assert await in_a_request(request) == (1, 2)


async def test_it_answers_none_when_the_generation_is_not_a_number():
    generation = Generation("test-not-a-number")
    redis.Redis.from_url(str(redis_url())).set(generation.key, b"\x80pickled")
    assert await generation.aget() is None  # a miss, never a hit


@pytest.mark.django_db(transaction=True)
async def test_it_serves_a_cache_entry_from_the_process_until_its_namespace_is_invalidated():
    await django_cache.aclear()
    loads = 0

    async def loader() -> list[str]:
        nonlocal loads
        loads += 1
        return [f"load {loads}"]

    first = await localcache.load("tpa-list", "test", loader)
    before = gets_served()
    again = await localcache.load("tpa-list", "test", loader)
    assert again.value == first.value == ["load 1"]
    assert gets_served() - before == 1  # the generation only: the entry itself came from the process
    await cache.ainvalidate("tpa-list")  # the admin's "invalidate", in any process
    assert (await localcache.load("tpa-list", "test", loader)).value == ["load 2"]


def test_it_closes_each_event_loops_connection_when_the_loop_ends():
    # Sync views, management commands and async_to_sync each run on a loop of their own.
    server = redis.Redis.from_url(str(redis_url()))
    generation = Generation("test-one-shot-loops")
    asyncio.run(generation.aget())
    before = len(server.client_list())
    for _ in range(30):
        assert asyncio.run(generation.aget()) is not None
    assert len(server.client_list()) <= before + 1


def test_a_value_that_grants_nothing_is_kept_a_few_seconds_while_no_generation_can_be_read():
    import time

    definitions = localcache.LocalCache("test-definitions", ttl=30, unverified_ttl=0.2)
    access = localcache.LocalCache("test-access", ttl=30)
    definitions.set("claims", "definition", None)  # Redis is down
    access.set("claims", True, None)
    assert definitions.get("claims", None) == "definition"
    assert access.get("claims", None) is localcache.MISSING  # who may see it is never assumed
    # Once the generation can be read again, the copy from the outage is a miss.
    assert definitions.get("claims", 3) is localcache.MISSING
    definitions.set("claims", "verified", 3)
    assert definitions.get("claims", None) == "verified"  # stored just now
    time.sleep(0.25)
    assert definitions.get("claims", None) is localcache.MISSING  # too old to serve unverified
    assert definitions.get("claims", 3) == "verified"  # still good once verified
